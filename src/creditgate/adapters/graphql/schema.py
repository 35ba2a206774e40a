"""The Strawberry schema: the contract's Query, Mutation and Subscription, assembled from one module per area."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from creditgate.adapters.graphql.access import AccessMutation, AccessQuery
from creditgate.adapters.graphql.entitlements import ENTITLEMENT_TYPES, EntitlementMutation, EntitlementQuery
from creditgate.adapters.graphql.errors import log_unexpected
from creditgate.adapters.graphql.execution import Execution
from creditgate.adapters.graphql.features import FeatureMutation, FeatureQuery
from creditgate.adapters.graphql.grants import GrantMutation, GrantQuery
from creditgate.adapters.graphql.limits import MAX_TOKENS, VariableListLimit, validation_rules
from creditgate.adapters.graphql.live import Subscription
from creditgate.adapters.graphql.meters import MeterMutation, MeterQuery
from creditgate.adapters.graphql.notifications import NotificationMutation, NotificationQuery
from creditgate.adapters.graphql.scalars import SCALARS
from creditgate.adapters.graphql.subjects import SubjectMutation, SubjectQuery


@strawberry.type
class Query(FeatureQuery, SubjectQuery, MeterQuery, EntitlementQuery, GrantQuery, AccessQuery, NotificationQuery):
    pass


@strawberry.type
class Mutation(FeatureMutation, SubjectMutation, MeterMutation, EntitlementMutation, GrantMutation, AccessMutation,
               NotificationMutation):
    pass


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        log_unexpected(errors)  # expected errors (bad input, not found...) are not logged


def build_schema() -> Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=ENTITLEMENT_TYPES,
        extensions=[
            lambda: MaxTokensLimiter(MAX_TOKENS),
            lambda: ParserCache(maxsize=512),
            validation_rules,
            lambda: ValidationCache(maxsize=512),
            VariableListLimit,
        ],
        config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALARS),
        execution_context_class=Execution,
    )


schema = build_schema()
