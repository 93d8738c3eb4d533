"""``AsyncDifyPluginClient`` against the fixture daemon: the same surface as the sync client, streaming,
timeouts, concurrency. (``test_scenarios.py`` runs every call under every scenario with both clients.)"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import time
from typing import Any

import httpx
import pytest

from dify_plugin_client import (
    AsyncDifyPluginClient,
    DifyPluginClient,
    PluginConfig,
    PluginDaemonInnerError,
    PluginInvokeError,
    PluginNotFoundError,
    ToolParameterValidationError,
)
from dify_plugin_client.entities.tool import (
    BlobInvokeMessage,
    JsonInvokeMessage,
    TextInvokeMessage,
)
from daemon_payloads import IDENTIFIER, TENANT, plugin_entity, tool_provider_row
from fixture_server import FixtureDaemon, Reply, error_body, sse_line, success_body

INVOKE = f"/plugin/{TENANT}/dispatch/tool/invoke"
TOOL = f"/plugin/{TENANT}/management/tool"
M = f"/plugin/{TENANT}/management"


def chunk(kind: str, message: object, meta: object = None) -> bytes:
    return sse_line(success_body({"type": kind, "message": message, "meta": meta}))


def public_methods(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}


def test_async_client_has_the_sync_surface() -> None:
    sync_methods = public_methods(DifyPluginClient)
    async_methods = public_methods(AsyncDifyPluginClient)
    assert set(sync_methods) - {"close"} == set(async_methods) - {"aclose"}
    for name, sync_method in sync_methods.items():
        if name == "close":
            continue
        async_method = async_methods[name]
        assert inspect.iscoroutinefunction(async_method), name
        sync_signature = inspect.signature(sync_method)
        async_signature = inspect.signature(async_method)
        assert list(sync_signature.parameters.values()) == list(async_signature.parameters.values()), name
        sync_return = str(sync_signature.return_annotation)
        expected = sync_return.replace("Generator[", "AsyncGenerator[").replace(", None, None]", ", None]")
        assert str(async_signature.return_annotation) == expected, name


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_invoke_streams_typed_messages_and_merges_blobs(daemon: FixtureDaemon) -> None:
    daemon.json("GET", TOOL, tool_provider_row())
    blob = b"\x00\x01binary\xff"
    daemon.sse("POST", INVOKE, [
        chunk("text", {"text": "hel"}),
        chunk("blob_chunk", {"id": "b", "sequence": 0, "total_length": len(blob),
                             "blob": base64.b64encode(blob[:4]).decode(), "end": False}),
        chunk("text", {"text": "lo"}),
        chunk("blob_chunk", {"id": "b", "sequence": 1, "total_length": len(blob),
                             "blob": base64.b64encode(blob[4:]).decode(), "end": True}, {"mime_type": "x/y"}),
        chunk("json", {"json_object": {"a": 1}}),
    ], delay=0.05)

    async def scenario() -> list[Any]:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, timeout=5.0)) as client:
            stream = await client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {"query": "hi"})
            return [message async for message in stream]

    messages = run(scenario())
    assert [type(m) for m in messages] == [TextInvokeMessage, TextInvokeMessage, BlobInvokeMessage, JsonInvokeMessage]
    assert [m.message.text for m in messages[:2]] == ["hel", "lo"]
    assert messages[2].message.blob == blob and messages[2].meta == {"mime_type": "x/y"}
    assert messages[3].message.data == {"a": 1} == messages[3].message.json_object
    sent = daemon.requests_to(INVOKE)[0]
    assert sent.headers["x-plugin-id"] == "acme/searcher"
    assert sent.json()["data"]["tool_parameters"] == {"query": "hi"}


def test_invoke_checks_parameters_before_sending_and_raises_stream_errors(daemon: FixtureDaemon) -> None:
    daemon.json("GET", TOOL, tool_provider_row())
    inner = json.dumps({"args": {}, "error_type": "ValueError", "message": "boom"})
    daemon.sse("POST", INVOKE, [chunk("text", {"text": "partial"}), sse_line(error_body(-500, "PluginInvokeError", inner))])

    async def scenario() -> list[str]:
        seen: list[str] = []
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, timeout=5.0)) as client:
            with pytest.raises(ToolParameterValidationError):
                await client.invoke(TENANT, "u", "acme/searcher/search", "typed", {}, {"count": 4})
            assert daemon.requests_to(INVOKE) == []
            stream = await client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {"query": "q"})
            with pytest.raises(PluginInvokeError) as caught:
                async for message in stream:
                    if message.type == "text":
                        seen.append(message.message.text)
            assert caught.value.inner_message == "boom"
        return seen

    assert run(scenario()) == ["partial"]


def test_timeout_and_concurrency(daemon: FixtureDaemon) -> None:
    daemon.json("GET", f"{M}/list", {"list": [plugin_entity()], "total": 1})
    daemon.global_delay = 0.5

    async def impatient() -> None:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, timeout=0.1)) as client:
            await client.list_plugins(TENANT)

    with pytest.raises(PluginDaemonInnerError) as caught:
        run(impatient())
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)

    async def many() -> list[int]:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, timeout=10.0)) as client:
            results = await asyncio.gather(*(client.list_plugins(TENANT) for _ in range(10)))
            return [len(r) for r in results]

    started = time.monotonic()
    assert run(many()) == [1] * 10
    # Ten answers that each take 0.5 s arrive together: the requests ran concurrently.
    assert time.monotonic() - started < 3.0


def test_uninstall_of_unknown_installation_raises(daemon: FixtureDaemon) -> None:
    # The daemon's answer for an installation id the tenant does not have (HTTP 200, code -404).
    daemon.on("POST", f"{M}/uninstall", Reply(body=error_body(-404, "PluginNotFoundError", "plugin not found")))

    async def scenario() -> None:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, timeout=5.0)) as client:
            await client.uninstall(TENANT, plugin_installation_id="abc123")

    with pytest.raises(PluginNotFoundError) as caught:
        run(scenario())
    assert (caught.value.code, caught.value.description) == (-404, "plugin not found")
    assert daemon.requests_to(f"{M}/uninstall")[0].json() == {"plugin_installation_id": "abc123"}


def test_readme_missing_is_empty(daemon: FixtureDaemon) -> None:
    daemon.on("GET", f"{M}/fetch/readme",
              Reply(body=error_body(-404, "PluginDaemonNotFoundError", "no readme content available for this plugin")))

    async def scenario() -> str:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, timeout=5.0)) as client:
            return await client.fetch_plugin_readme(TENANT, IDENTIFIER, language="en")

    assert run(scenario()) == ""
