"""Query bounds, checked before execution. Rule classes are built once, so the
validation cache still hits (a per-request QueryDepthLimiter would defeat it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    ListTypeNode,
    ListValueNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    TypeNode,
    ValidationContext,
    ValidationRule,
)
from graphql.language import FieldNode
from strawberry.extensions import AddValidationRules, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator

from creditgate.services import events as event_svc

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_FIELDS = 500
MAX_TOKENS = 10_000
MAX_LIST = 1000
# A variable holding the events of ingestEvents may be as long as the ingest service allows
# (services/events.py refuses longer batches; here they are refused before coercion).
MAX_EVENTS = event_svc.MAX_BATCH


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


def _too_long(value: Any, bound: int) -> bool:
    """A list argument, or a list field of an input object argument, longer than `bound`.

    The schema has no deeper lists, and JSON scalars (event `data`) are data, not arguments."""
    if isinstance(value, list):
        return len(value) > bound
    if isinstance(value, dict):
        return any(isinstance(v, list) and len(v) > MAX_LIST for v in value.values())
    return False


def _item_type(node: TypeNode) -> str | None:
    """The item type name of a list type ([X!]!, [X]...), else None."""
    if isinstance(node, NonNullTypeNode):
        node = node.type
    if not isinstance(node, ListTypeNode):
        return None
    item = node.type.type if isinstance(node.type, NonNullTypeNode) else node.type
    return getattr(getattr(item, "name", None), "value", None)


def list_bound(doc: DocumentNode | None, variable: str) -> int:
    """How long a list the variable may hold: MAX_EVENTS for a list of CloudEventInput, else MAX_LIST."""
    for op in doc.definitions if doc is not None else ():
        if isinstance(op, OperationDefinitionNode):
            for v in op.variable_definitions or ():
                if v.variable.name.value == variable and _item_type(v.type) == "CloudEventInput":
                    return MAX_EVENTS
    return MAX_LIST


class VariableListLimit(SchemaExtension):
    """Refuse variables holding a list longer than MAX_LIST (MAX_EVENTS for events), before execution.

    Runs after ValidationCache (listed before it), whose errors it extends."""

    def on_validate(self) -> Iterator[None]:
        variables = self.execution_context.variables or {}
        doc = self.execution_context.graphql_document
        for name, value in variables.items():
            bound = list_bound(doc, name) if isinstance(value, list) and len(value) > MAX_LIST else MAX_LIST
            if _too_long(value, bound):
                errors = list(self.execution_context.pre_execution_errors or [])
                errors.append(GraphQLError(f"a list variable may hold at most {bound} items"))
                self.execution_context.pre_execution_errors = errors
                break
        yield
