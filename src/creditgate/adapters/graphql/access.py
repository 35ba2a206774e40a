"""GraphQL: the access-check hot path (entitlementValue, checkAccess, Subject.access) and subject tokens."""

from __future__ import annotations

from datetime import datetime

import strawberry

from creditgate.adapters.graphql import loaders
from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.entitlements import EntitlementValue, num
from creditgate.adapters.graphql.permissions import argument, checked_subjects, subject_field
from creditgate.adapters.graphql.scalars import JSON
from creditgate.domain.errors import NotFound
from creditgate.records import AccessReason, EntitlementType
from creditgate.services import tokens as token_svc
from creditgate.services import values as svc

# The shared vocabulary (records.py), registered under the contract's name.
strawberry.enum(AccessReason, name="AccessReason")


@strawberry.type
class AccessResult:
    subject_key: str
    feature_key: str
    has_access: bool
    reason: AccessReason
    entitlement_id: strawberry.ID | None = None
    type: EntitlementType | None = None
    balance: float | None = None
    usage: float | None = None
    overage: float | None = None
    config: JSON | None = None

    @classmethod
    def of(cls, a: svc.Access) -> AccessResult:
        v = a.value
        return cls(subject_key=a.subject_key, feature_key=a.feature_key, has_access=a.has_access,
                   reason=AccessReason(a.reason),
                   entitlement_id=strawberry.ID(a.entitlement_id) if a.entitlement_id else None,
                   type=EntitlementType(a.type) if a.type else None,
                   balance=num(v.balance) if v else None, usage=num(v.usage) if v else None,
                   overage=num(v.overage) if v else None, config=v.config if v else None)


@strawberry.type
class SubjectToken:
    token: str
    subject_key: str
    expires_at: datetime


@strawberry.input
class AccessCheckInput:
    subject_key: str
    feature_key: str


async def subject_access(info: Info, subject_key: str, feature_key: str, at: datetime | None) -> AccessResult:
    """Subject.access (its field declares the subject-read guard)."""
    return AccessResult.of(await loaders.access(info).load((subject_key, feature_key, at)))


@strawberry.type
class AccessQuery:
    @subject_field(argument)
    async def entitlement_value(self, info: Info, subject_key: str, entitlement_id_or_feature_key: str,
                                at: datetime | None = None) -> EntitlementValue:
        answer = await svc.entitlement_value(info.context.rt, subject_key, entitlement_id_or_feature_key, at)
        if answer.value is None:
            raise NotFound(f"no entitlement {entitlement_id_or_feature_key!r} for subject {subject_key!r}")
        return EntitlementValue.of(answer.value)

    @subject_field(checked_subjects)
    async def check_access(self, info: Info, checks: list[AccessCheckInput],
                           at: datetime | None = None) -> list[AccessResult]:
        answers = await svc.check_access(info.context.rt, [(c.subject_key, c.feature_key) for c in checks], at)
        return [AccessResult.of(a) for a in answers]


@strawberry.type
class AccessMutation:
    @strawberry.mutation
    async def create_subject_token(self, info: Info, subject_key: str, ttl_seconds: int | None = 3600) -> SubjectToken:
        token, rec = await token_svc.create_token(info.context.admin(), subject_key,
                                                   3600 if ttl_seconds is None else ttl_seconds)
        return SubjectToken(token=token, subject_key=rec.subject_key, expires_at=rec.expires_at)
