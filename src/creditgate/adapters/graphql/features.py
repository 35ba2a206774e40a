"""GraphQL: features."""

from __future__ import annotations

from enum import Enum

import strawberry

from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.scalars import JSON, DateTime
from creditgate.records import Feature as FeatureRecord
from creditgate.services import features as svc


@strawberry.enum
class FeatureOrderBy(Enum):
    ID = "ID"
    KEY = "KEY"
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"


@strawberry.type
class Feature:
    id: strawberry.ID
    key: str
    name: str
    metadata: JSON
    meter_slug: str | None
    meter_group_by_filters: JSON
    archived_at: DateTime | None
    created_at: DateTime
    updated_at: DateTime

    @classmethod
    def of(cls, f: FeatureRecord) -> Feature:
        return cls(id=strawberry.ID(f.id), key=f.key, name=f.name, metadata=f.metadata,
                   meter_slug=f.meter_slug, meter_group_by_filters=f.meter_group_by_filters,
                   archived_at=f.archived_at, created_at=f.created_at, updated_at=f.updated_at)


@strawberry.input
class CreateFeatureInput:
    key: str
    name: str
    metadata: JSON | None = None
    meter_slug: str | None = None
    meter_group_by_filters: JSON | None = None


@strawberry.type
class FeatureQuery:
    @strawberry.field
    async def features(self, info: Info, include_archived: bool | None = False, limit: int | None = 1000,
                       offset: int | None = 0,
                       order_by: FeatureOrderBy | None = FeatureOrderBy.UPDATED_AT) -> list[Feature]:
        # The contract makes these nullable with defaults: an explicit null means the default.
        order = (order_by or FeatureOrderBy.UPDATED_AT).value
        rows = await svc.list_features(info.context.admin(), bool(include_archived),
                                       1000 if limit is None else limit, offset or 0, order)
        return [Feature.of(f) for f in rows]

    @strawberry.field
    async def feature(self, info: Info, id_or_key: str) -> Feature | None:
        found = await svc.get_feature(info.context.admin(), id_or_key)
        return Feature.of(found) if found else None


@strawberry.type
class FeatureMutation:
    @strawberry.mutation
    async def create_feature(self, info: Info, input: CreateFeatureInput) -> Feature:
        f = await svc.create_feature(info.context.admin(), input.key, input.name, input.metadata,
                                     input.meter_slug, input.meter_group_by_filters)
        return Feature.of(f)

    @strawberry.mutation
    async def archive_feature(self, info: Info, id: strawberry.ID) -> Feature:
        return Feature.of(await svc.archive_feature(info.context.admin(), str(id)))
