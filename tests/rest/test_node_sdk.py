"""The official OpenMeter Node SDK (@openmeter/sdk, pinned in tests/node) against the live server: every
method it has for meters, events, subjects, features, entitlements, grants and portal tokens."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.rest.conftest import API_KEY, Server

PACKAGE = Path(__file__).resolve().parent.parent / "node"


def _node() -> str:
    node = shutil.which("node")
    missing = "node is not installed" if node is None else (
        None if (PACKAGE / "node_modules" / "@openmeter" / "sdk").is_dir()
        else "tests/node is not installed: npm ci --prefix tests/node")
    if missing:
        if os.environ.get("CREDITGATE_REQUIRE_SERVICES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    assert node is not None
    return node


def test_node_sdk_flow(live: Server) -> None:
    node = _node()
    env = {**os.environ, "CREDITGATE_URL": live.url, "CREDITGATE_API_KEY": API_KEY, "NO_COLOR": "1"}
    done = subprocess.run([node, "--test-reporter=spec", "sdk_flow.mjs"], cwd=PACKAGE, env=env,
                          capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert re.search(r"\bfail 0\b", report) and re.search(r"\bpass [1-9]", report), report
