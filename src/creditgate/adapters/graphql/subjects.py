"""GraphQL: subjects."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.permissions import parent_subject, subject_field
from creditgate.adapters.graphql.scalars import JSON, DateTime
from creditgate.records import Subject as SubjectRecord
from creditgate.services import subjects as svc
from creditgate.services import tokens as token_svc

if TYPE_CHECKING:
    from creditgate.adapters.graphql.access import AccessResult
    from creditgate.adapters.graphql.entitlements import Entitlement


@strawberry.type
class Subject:
    id: strawberry.ID
    key: str
    display_name: str | None
    metadata: JSON
    created_at: DateTime
    updated_at: DateTime

    @subject_field(parent_subject)
    async def entitlements(self, info: Info, include_deleted: bool | None = False) -> list[Annotated[
            Entitlement, strawberry.lazy("creditgate.adapters.graphql.entitlements")]]:
        from creditgate.adapters.graphql import loaders
        from creditgate.adapters.graphql.entitlements import of

        return [of(e) for e in await loaders.subject_entitlements(info).load((self.key, bool(include_deleted)))]

    @subject_field(parent_subject)
    async def access(self, info: Info, feature_key: str, at: datetime | None = None) -> Annotated[
            AccessResult, strawberry.lazy("creditgate.adapters.graphql.access")]:
        from creditgate.adapters.graphql.access import subject_access

        return await subject_access(info, self.key, feature_key, at)

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
        await token_svc.authorize_subject_read(ctx.rt, ctx.principal, found.key)
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
