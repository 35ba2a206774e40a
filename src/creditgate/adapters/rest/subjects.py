"""REST: subjects."""

from __future__ import annotations

from creditgate.adapters.rest.models import SubjectIn, SubjectOut
from creditgate.adapters.rest.router import Call, api
from creditgate.domain.errors import NotFound
from creditgate.services import subjects as svc
from creditgate.wire import subject_out

TAG = "Subjects"


@api.route("GET", "/subjects", op_id="listSubjects", tag=TAG, summary="List subjects",
           response=list[SubjectOut])
async def list_subjects(c: Call) -> list[SubjectOut]:
    return [subject_out(s) for s in await svc.list_subjects(c.rt)]


@api.route("POST", "/subjects", op_id="upsertSubject", tag=TAG, summary="Create or update subjects by key",
           body=list[SubjectIn], response=list[SubjectOut])
async def upsert_subjects(c: Call) -> list[SubjectOut]:
    items: list[SubjectIn] = c.body
    return [subject_out(await svc.upsert_subject(c.rt, s.key, s.display_name, s.metadata)) for s in items]


@api.route("GET", "/subjects/{subjectIdOrKey}", op_id="getSubject", tag=TAG, summary="Get a subject by id or key",
           response=SubjectOut, access="subject")
async def get_subject(c: Call) -> SubjectOut:
    key = await c.subject_key()
    found = await svc.get_subject(c.rt, key)
    if found is None:
        raise NotFound(f"subject {c.path['subjectIdOrKey']!r} not found")
    return subject_out(found)


@api.route("DELETE", "/subjects/{subjectIdOrKey}", op_id="deleteSubject", tag=TAG, summary="Delete a subject",
           status=204)
async def delete_subject(c: Call) -> None:
    await svc.delete_subject(c.rt, c.path["subjectIdOrKey"])
