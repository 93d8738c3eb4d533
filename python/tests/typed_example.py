"""Typed use of the client, checked with ``mypy --strict`` by ``test_typing.py`` (never imported by tests).

It must type-check without ``cast`` or ``type: ignore``: comparing ``msg.type`` with a string literal narrows
``msg.message`` to the model of that message type, for the sync and the async client alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator

from dify_plugin_client import AsyncDifyPluginClient, DifyPluginClient, PluginConfig
from dify_plugin_client.entities.plugin import PluginInstallationSource
from dify_plugin_client.entities.tool import ToolInvokeMessage, ToolInvokeMessageUnion


def render(msg: ToolInvokeMessageUnion) -> str:
    if msg.type == "text":
        return msg.message.text
    if msg.type == "link" or msg.type == "image":
        return f"[{msg.type}] {msg.message.text}"
    if msg.type == "json":
        data: dict[str, object] | list[object] = msg.message.data
        return f"{data} {msg.message.json_object} {msg.message.suppress_output}"
    if msg.type == "blob":
        size: int = len(msg.message.blob)
        return f"{size} bytes"
    if msg.type == "variable":
        return msg.message.variable_name
    if msg.type == "log":
        return msg.message.status
    return msg.type


def stream_as_in_the_readme(client: DifyPluginClient, tenant_id: str) -> None:
    stream: Generator[ToolInvokeMessage, None, None] = client.invoke(
        tenant_id=tenant_id,
        user_id="user-123",
        tool_provider="organization/plugin_name/provider_name",
        tool_name="search",
        credentials={},
        tool_parameters={"query": "hello world"},
    )
    for msg in client.invoke(tenant_id, "u", "org/plugin/provider", "search", {}, {"query": "q"}):
        if msg.type == "text":
            print(msg.message.text, end="")
        elif msg.type == "json":
            print(msg.message.data)
    stream.close()


def calls_with_the_specification_names(client: DifyPluginClient, tenant_id: str) -> bool:
    client.upgrade_plugin(
        tenant_id,
        original_plugin_unique_identifier="plugin-a@1.0.0",
        new_plugin_unique_identifier="plugin-a@1.1.0",
        source=PluginInstallationSource.Package,
        meta={},
    )
    missing = client.fetch_missing_dependencies(tenant_id, plugin_unique_identifiers=["a"])
    names: list[str] = [m.plugin_unique_identifier for m in missing]
    return bool(names) and client.uninstall(tenant_id, plugin_installation_id="abc123")


async def async_stream(tenant_id: str) -> list[str]:
    async with AsyncDifyPluginClient(PluginConfig(url="http://localhost:5002")) as client:
        texts: list[str] = []
        async for msg in await client.invoke(tenant_id, "u", "org/plugin/provider", "search", {}, {}):
            if msg.type == "text":
                texts.append(msg.message.text)
            elif msg.type == "json":
                texts.append(str(msg.message.data))
        removed: bool = await client.uninstall(tenant_id, plugin_installation_id="abc123")
        return texts if removed else []


if __name__ == "__main__":
    asyncio.run(async_stream("tenant"))
