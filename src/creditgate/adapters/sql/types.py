"""Column types and SQL functions that behave the same on PostgreSQL and SQLite.

- `UTCDateTime`: aware UTC datetimes in, aware UTC datetimes out (SQLite keeps naive text).
- `ExactDecimal`: exact decimals: NUMERIC on PostgreSQL, canonical text on SQLite.
- `exact_sum(col)` / `exact_add(a, b)`: exact aggregation; on SQLite they compile to the
  `dsum`/`dadd` functions that `register_sqlite_functions` installs on each connection.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator, TypeEngine

from creditgate.amounts import PRECISION, SCALE


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return as_utc(value)


def as_utc(value: Any) -> datetime | None:
    """A stored timestamp (SQLite text or naive, PostgreSQL aware) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    out: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return out


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def dec_text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


class ExactDecimal(TypeDecorator[Decimal]):
    impl = Numeric(PRECISION, SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(PRECISION, SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        dec = to_decimal(value)
        return dec_text(dec) if dialect.name == "sqlite" else dec

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return to_decimal(value).normalize() + 0


class exact_sum(GenericFunction[Decimal]):
    type = ExactDecimal()
    inherit_cache = True
    name = "exact_sum"


class exact_add(GenericFunction[Decimal]):
    type = ExactDecimal()
    inherit_cache = True
    name = "exact_add"


@compiles(exact_sum)
def _sum_default(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(exact_sum, "sqlite")
def _sum_sqlite(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"dsum({compiler.process(element.clauses, **kw)})"


@compiles(exact_add)
def _add_default(element: exact_add, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"({compiler.process(a, **kw)} + {compiler.process(b, **kw)})"


@compiles(exact_add, "sqlite")
def _add_sqlite(element: exact_add, compiler: SQLCompiler, **kw: Any) -> str:
    return f"dadd({compiler.process(element.clauses, **kw)})"


class _DecimalSum:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: Any) -> None:
        if value is None:
            return
        with localcontext() as ctx:
            ctx.prec = PRECISION
            self.total = to_decimal(value) + (self.total or 0)

    def finalize(self) -> str | None:
        return None if self.total is None else dec_text(self.total)


def _decimal_add(a: Any, b: Any) -> str | None:
    if a is None or b is None:
        return None if a is None and b is None else dec_text(to_decimal(a if b is None else b))
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return dec_text(to_decimal(a) + to_decimal(b))


def _decimal_sub(a: Any, b: Any) -> str | None:
    """a - b (NULL as 0 when the other is given), for the usage bucket triggers (migration 0004)."""
    if b is None:
        return _decimal_add(a, None)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return _decimal_add(a, dec_text(-to_decimal(b))) if a is not None else dec_text(-to_decimal(b))


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    conn.create_aggregate("dsum", 1, _DecimalSum)  # type: ignore[arg-type]
    conn.create_function("dadd", 2, _decimal_add, deterministic=True)
    conn.create_function("dsub", 2, _decimal_sub, deterministic=True)
