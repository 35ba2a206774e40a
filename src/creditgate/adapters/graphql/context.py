"""Per-request (or per-WebSocket) GraphQL context: the runtime, the caller and per-request loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.types import Info as StrawberryInfo

from creditgate.services.auth import Principal
from creditgate.services.runtime import Runtime


@dataclass
class Context:
    rt: Runtime
    principal: Principal
    loaders: dict[str, Any] = field(default_factory=dict)
    connection_params: dict[str, Any] | None = None  # WebSocket: the connection_init payload (Strawberry sets it)
    connection: Any = None  # WebSocket: the protocol handler (adapters/graphql/ws.py), to close the socket

    def admin(self) -> Runtime:
        """The runtime, after checking that the caller is an admin."""
        self.principal.require_admin()
        return self.rt


Info = StrawberryInfo[Context, None]
