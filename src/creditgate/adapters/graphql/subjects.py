"""GraphQL: subjects."""

from __future__ import annotations

import strawberry

from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.scalars import JSON, DateTime
from creditgate.services import subjects as svc
from creditgate.services.records import Subject as SubjectRecord


@strawberry.type
class Subject:
    id: strawberry.ID
    key: str
    display_name: str | None
    metadata: JSON
    created_at: DateTime
    updated_at: DateTime

    @classmethod
    def of(cls, s: SubjectRecord) -> Subject:
        return cls(id=strawberry.ID(s.id), key=s.key, display_name=s.display_name, metadata=s.metadata,
                   created_at=s.created_at, updated_at=s.updated_at)


@strawberry.input
class UpsertSubjectInput:
    key: str
    display_name: str | None = None
    metadata: JSON | None = None


@strawberry.type
class SubjectQuery:
    @strawberry.field
    async def subjects(self, info: Info) -> list[Subject]:
        return [Subject.of(s) for s in await svc.list_subjects(info.context.admin())]

    @strawberry.field
    async def subject(self, info: Info, id_or_key: str) -> Subject | None:
        ctx = info.context
        found = await svc.get_subject(ctx.rt, id_or_key)
        if found is None:
            ctx.principal.require_admin()
            return None
        ctx.principal.require_subject(found.key)
        return Subject.of(found)


@strawberry.type
class SubjectMutation:
    @strawberry.mutation
    async def upsert_subject(self, info: Info, input: UpsertSubjectInput) -> Subject:
        s = await svc.upsert_subject(info.context.admin(), input.key, input.display_name, input.metadata)
        return Subject.of(s)

    @strawberry.mutation
    async def delete_subject(self, info: Info, id_or_key: str) -> bool:
        await svc.delete_subject(info.context.admin(), id_or_key)
        return True
