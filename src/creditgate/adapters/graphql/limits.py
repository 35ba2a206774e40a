"""Query bounds, checked before execution. Rule classes are built once, so the
validation cache still hits (a per-request QueryDepthLimiter would defeat it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, ListValueNode, ValidationContext, ValidationRule
from graphql.language import FieldNode
from strawberry.extensions import AddValidationRules, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_FIELDS = 500
MAX_TOKENS = 10_000
MAX_LIST = 1000


class FieldCountRule(ValidationRule):
    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.count = 0

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.count += 1
        if self.count == MAX_FIELDS + 1:
            self.report_error(GraphQLError(f"the query selects more than {MAX_FIELDS} fields"))


class ListSizeRule(ValidationRule):
    def enter_list_value(self, node: ListValueNode, *_: Any) -> None:
        if len(node.values) > MAX_LIST:
            self.report_error(GraphQLError(f"a list argument may hold at most {MAX_LIST} items", node))


RULES = [depth_validator(MAX_DEPTH, None), aliases_validator(MAX_ALIASES), FieldCountRule, ListSizeRule]


def validation_rules() -> AddValidationRules:
    return AddValidationRules(RULES)


def _too_long(value: Any) -> bool:
    """A list argument, or a list field of an input object argument, longer than MAX_LIST.

    The schema has no deeper lists, and JSON scalars (event `data`) are data, not arguments."""
    if isinstance(value, list):
        return len(value) > MAX_LIST
    if isinstance(value, dict):
        return any(isinstance(v, list) and len(v) > MAX_LIST for v in value.values())
    return False


class VariableListLimit(SchemaExtension):
    """Refuse variables holding a list longer than MAX_LIST, before execution.

    Runs after ValidationCache (listed before it), whose errors it extends."""

    def on_validate(self) -> Iterator[None]:
        variables = self.execution_context.variables or {}
        if any(_too_long(v) for v in variables.values()):
            errors = list(self.execution_context.pre_execution_errors or [])
            errors.append(GraphQLError(f"a list variable may hold at most {MAX_LIST} items"))
            self.execution_context.pre_execution_errors = errors
        yield
