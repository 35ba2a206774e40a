"""The schema's execution context: Strawberry's, with graphql-core's reference cycle broken.

graphql-core 3.3's executor holds bound methods of itself (`async_helpers`), so every executor is a
reference cycle that keeps the request's variables, arguments and result alive until a full cyclic
collection. The app makes those rare (app.py's gc thresholds, for open subscriptions), so large
requests' garbage piled up: ~1.4 MB of RSS per createEntitlements call of 1000 inputs, without bound
(docs/scaling.md). Dropping the helpers once the operation's result is complete lets reference
counting free it all at once. (A response with errors still holds one: an error's traceback refers to
the executor's frames; errors are rare, small, and their tracebacks are logged after execution.)
"""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class Execution(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        result = super().execute_operation(serially)
        if not self.is_awaitable(result):
            self._release()
            return result

        async def completed() -> Any:
            try:
                return await result
            finally:
                self._release()

        return completed()

    def _release(self) -> None:
        self.async_helpers = None  # type: ignore[assignment]
