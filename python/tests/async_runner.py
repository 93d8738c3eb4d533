"""``AsyncClientRunner``: drives an ``AsyncDifyPluginClient`` from synchronous test code.

Owns: one private event loop per runner; every method call is run to completion on it, and an async
generator result (``invoke``) is collected into a list, so the scenario calls written for the sync client
run unchanged against the async one.
Must not: hide exceptions: whatever the coroutine raises is raised to the caller.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

from dify_plugin_client import AsyncDifyPluginClient


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


class AsyncClientRunner:
    def __init__(self, client: AsyncDifyPluginClient) -> None:
        self.client = client
        self.loop = asyncio.new_event_loop()

    def run(self, awaitable: Any) -> Any:
        result = self.loop.run_until_complete(awaitable)
        if inspect.isasyncgen(result):
            return self.loop.run_until_complete(_collect(result))
        return result

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.run(method(*args, **kwargs))

        return call

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
