"""Structural checks: the exported schema matches the code and the contract; every edge of the layering holds
(the domain stays pure; services see no framework and no storage internals; no adapter imports another)."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import sys
from collections.abc import Callable

import pytest

from creditgate.adapters.graphql.schema import schema

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTRACT_TOOL = ROOT.parent / "shared" / "tools" / "check_contract.py"


def test_schema_file_matches_code() -> None:
    on_disk = (ROOT / "schema.graphql").read_text()
    assert on_disk == schema.as_str() + "\n", "schema.graphql is stale: run `uv run creditgate export-schema`"


@pytest.mark.skipif(not CONTRACT_TOOL.exists(), reason="../shared is not beside this checkout")
def test_schema_contains_the_contract() -> None:
    spec = importlib.util.spec_from_file_location("check_contract", CONTRACT_TOOL)
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    contract = (CONTRACT_TOOL.parent.parent / "contract" / "schema.graphql").read_text()
    assert tool.gaps(schema.as_str(), contract) == []


def test_domain_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"creditgate"}
    for path in (ROOT / "src" / "creditgate" / "domain").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("creditgate."):
                    assert name.startswith("creditgate.domain"), f"{path.name} imports {name}"


# -- the layering: domain <- records and other base modules <- services <- adapters <- app/cli (README) --

SRC = ROOT / "src"
PKG = SRC / "creditgate"
# Storage internals: only adapters/sql itself may import them (services use repositories and db.Session).
SQL_INTERNALS = {"tables", "dialect", "types", "migrations"}
# Frameworks that belong to adapters: a service importing one is a skin leaking into the rules.
FRAMEWORKS = {"sqlalchemy", "sqlmodel", "alembic", "psycopg", "aiosqlite", "redis", "hiredis", "strawberry",
              "graphql", "starlette", "uvicorn", "httpx", "prometheus_client"}
ADAPTERS = sorted(p.name for p in (PKG / "adapters").iterdir() if (p / "__init__.py").exists())
BASE = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in {"__init__", "__main__", "app", "cli"})


def _module_of(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, at any depth of the file (function bodies and
    TYPE_CHECKING blocks too); `from pkg import name` counts as `pkg.name` when that is a module."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                out.add(full if base.startswith("creditgate") and _is_module(full) else base)
    return out


def _files(where: pathlib.Path) -> list[pathlib.Path]:
    return sorted(where.rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def _layer(name: str) -> str:
    """domain, base, services, adapters.<package>, app (app and cli), or outside (stdlib, third party)."""
    parts = name.split(".")
    if parts[0] != "creditgate" or len(parts) == 1:
        return "outside" if parts[0] != "creditgate" else "app"
    if parts[1] in {"domain", "services"}:
        return parts[1]
    if parts[1] == "adapters":
        return "adapters." + parts[2] if len(parts) > 2 else "adapters"
    return "app" if parts[1] in {"app", "cli", "__main__"} else "base"


def service_violation(name: str) -> str | None:
    """Why a service may not import `name` (None: it may)."""
    layer = _layer(name)
    if layer == "outside":
        return "a framework" if _top(name) in FRAMEWORKS else None
    if layer in {"domain", "base", "services"}:
        return None
    if layer == "adapters.sql":
        parts = name.split(".")
        if len(parts) == 4 and parts[3] not in SQL_INTERNALS:
            return None  # a repository module, or db (Database, Session)
        return "storage internals (services use repositories)"
    return f"{layer} (above services)"


# Adapters that services call: they may see services only for what they implement (else a cycle).
SERVING = {"sql": set(), "cache": {"creditgate.services.cache"}}


def adapter_violation(package: str, name: str) -> str | None:
    """Why adapter `package` may not import `name` (None: it may)."""
    layer = _layer(name)
    if layer == "services" and package in SERVING and name not in SERVING[package]:
        return "services (services call this adapter, not the other way round)"
    if layer in {"outside", "domain", "base", "services", f"adapters.{package}"}:
        return None
    if layer == "app":
        return "app/cli (the wiring sits above every adapter)"
    return f"another adapter ({layer})"


def _violations(files: list[pathlib.Path], why: Callable[[str], str | None]) -> list[str]:
    out = []
    for path in files:
        for name in sorted(imports_of(path.read_text(), _module_of(path), path.name == "__init__.py")):
            reason = why(name)
            if reason is not None:
                out.append(f"{path.relative_to(SRC)} imports {name}: {reason}")
    return out


def test_the_import_checker_sees_every_form() -> None:
    src = ("import sqlalchemy\nfrom creditgate.adapters.sql import tables, entitlements as repo\n"
           "def f() -> None:\n    from creditgate.adapters import graphql\n"
           "if TYPE_CHECKING:\n    from creditgate.adapters.sql.dialect import upsert\n"
           "from . import values\nfrom ..records import Grant\n")
    got = imports_of(src, "creditgate.services.x")
    assert got == {"sqlalchemy", "creditgate.adapters.sql.tables", "creditgate.adapters.sql.entitlements",
                   "creditgate.adapters.graphql", "creditgate.adapters.sql.dialect", "creditgate.services.values",
                   "creditgate.records"}
    assert {n: service_violation(n) is not None for n in sorted(got)} == {
        "creditgate.adapters.graphql": True, "creditgate.adapters.sql.dialect": True,
        "creditgate.adapters.sql.entitlements": False, "creditgate.adapters.sql.tables": True,
        "creditgate.records": False, "creditgate.services.values": False, "sqlalchemy": True}
    assert adapter_violation("rest", "creditgate.adapters.graphql.scalars") is not None
    assert adapter_violation("graphql", "creditgate.adapters.sql.entitlements") is not None
    assert adapter_violation("sql", "creditgate.cli") is not None
    assert adapter_violation("sql", "creditgate.adapters.sql.tables") is None
    assert adapter_violation("sql", "creditgate.services.runtime") is not None
    assert adapter_violation("cache", "creditgate.services.cache") is None
    assert adapter_violation("cache", "creditgate.services.values") is not None
    assert adapter_violation("graphql", "creditgate.services.values") is None


def test_base_modules_stay_below_services_and_adapters() -> None:
    """records, amounts, config and the other top-level modules: what every layer may import."""
    def why(name: str) -> str | None:
        layer = _layer(name)
        return None if layer in {"outside", "domain", "base"} else f"{layer} (base modules sit below it)"

    assert BASE and "records" in BASE
    assert _violations([PKG / f"{m}.py" for m in BASE], why) == []


def test_services_import_no_framework_and_no_adapter_internals() -> None:
    files = _files(PKG / "services")
    assert any("creditgate.adapters.sql.entitlements" in imports_of(p.read_text(), _module_of(p)) for p in files)
    assert _violations(files, service_violation) == []


@pytest.mark.parametrize("package", ADAPTERS)
def test_an_adapter_imports_no_other_adapter_nor_the_wiring(package: str) -> None:
    assert _violations(_files(PKG / "adapters" / package), lambda n: adapter_violation(package, n)) == []
