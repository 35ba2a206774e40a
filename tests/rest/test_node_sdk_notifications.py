"""The official OpenMeter Node SDK's `notification` client (@openmeter/sdk, pinned in tests/node) against the live
server: channels, rules and events (tests/node/notification_flow.mjs)."""

from __future__ import annotations

import os
import re
import subprocess

from tests.rest.conftest import API_KEY, Server
from tests.rest.test_node_sdk import PACKAGE, _node


def test_node_sdk_notification_flow(live: Server) -> None:
    node = _node()
    env = {**os.environ, "CREDITGATE_URL": live.url, "CREDITGATE_API_KEY": API_KEY, "NO_COLOR": "1"}
    done = subprocess.run([node, "--test-reporter=spec", "notification_flow.mjs"], cwd=PACKAGE, env=env,
                          capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert re.search(r"\bfail 0\b", report) and re.search(r"\bpass 4\b", report), report
