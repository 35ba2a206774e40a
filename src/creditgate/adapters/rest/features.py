"""REST: features (DELETE archives)."""

from __future__ import annotations

from creditgate.adapters.rest.models import FeatureIn, FeatureListQuery, FeatureOut
from creditgate.adapters.rest.router import Call, api
from creditgate.domain.errors import NotFound
from creditgate.services import features as svc
from creditgate.wire import feature_out

TAG = "Features"
ORDER = {"id": "ID", "key": "KEY", "createdAt": "CREATED_AT", "updatedAt": "UPDATED_AT"}


@api.route("GET", "/features", op_id="listFeatures", tag=TAG, summary="List features",
           query=FeatureListQuery, response=list[FeatureOut])
async def list_features(c: Call) -> list[FeatureOut]:
    q: FeatureListQuery = c.query
    rows = await svc.list_features(c.rt, q.include_archived, q.limit, q.offset, ORDER[q.order_by], q.meter_slug)
    return [feature_out(f) for f in rows]


@api.route("POST", "/features", op_id="createFeature", tag=TAG, summary="Create a feature", status=201,
           body=FeatureIn, response=FeatureOut)
async def create_feature(c: Call) -> FeatureOut:
    b: FeatureIn = c.body
    return feature_out(await svc.create_feature(c.rt, b.key, b.name, b.metadata, b.meter_slug,
                                                b.meter_group_by_filters))


@api.route("GET", "/features/{featureId}", op_id="getFeature", tag=TAG, summary="Get a feature by id or key",
           response=FeatureOut)
async def get_feature(c: Call) -> FeatureOut:
    found = await svc.get_feature(c.rt, c.path["featureId"])
    if found is None:
        raise NotFound(f"feature {c.path['featureId']!r} not found")
    return feature_out(found)


@api.route("DELETE", "/features/{featureId}", op_id="deleteFeature", tag=TAG,
           summary="Archive a feature by id or key",
           status=204)
async def archive_feature(c: Call) -> None:
    await svc.archive_feature(c.rt, c.path["featureId"])
