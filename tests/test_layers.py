"""Structural checks: the exported schema matches the code and the contract; the domain stays pure."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import sys

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
