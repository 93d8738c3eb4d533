"""End to end with ``AsyncDifyPluginClient``: the scenario of ``test_e2e_daemon.py`` (upload and install,
look-ups, invocation, daemon errors, missing dependencies, upgrade, uninstall) against the real daemon running
the real SDK tool plugin. The tests share one daemon and run in file order; each drives its own client in
``asyncio.run``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from daemon_process import ADMIN_API_KEY, DaemonProcess, build_package
from dify_plugin_client import (
    AsyncDifyPluginClient,
    PluginConfig,
    PluginDaemonBadRequestError,
    PluginDaemonInternalServerError,
    PluginDaemonUnauthorizedError,
    PluginInvokeError,
    PluginNotFoundError,
    ToolParameterValidationError,
)
from dify_plugin_client.entities.daemon import PluginInstallTask
from dify_plugin_client.entities.plugin import PluginInstallationSource
from dify_plugin_client.entities.tool import (
    BlobInvokeMessage,
    JsonInvokeMessage,
    LinkInvokeMessage,
    TextInvokeMessage,
    VariableInvokeMessage,
)

INSTALL_TIMEOUT = 300.0
PROVIDER = "e2etest/searcher/search"
T = TypeVar("T")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path_factory.mktemp("daemon-async")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {"tenant": str(uuid.uuid4())}


def with_client(daemon: DaemonProcess, scenario: Callable[[AsyncDifyPluginClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, key=daemon.key, timeout=60.0)) as client:
            return await scenario(client)

    return asyncio.run(run())


async def wait_for_task(client: AsyncDifyPluginClient, daemon: DaemonProcess, tenant: str,
                        task_id: str) -> PluginInstallTask:
    started = time.monotonic()
    task = await client.wait_for_installation_task(tenant, task_id, poll_interval=0.5, timeout=INSTALL_TIMEOUT)
    assert task.status == "success", f"install task failed: {[p.message for p in task.plugins]}\n{daemon.log_tail()}"
    assert time.monotonic() - started < INSTALL_TIMEOUT + 5
    return task


def test_upload_and_install(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    tenant = state["tenant"]

    async def scenario(client: AsyncDifyPluginClient) -> None:
        decoded = await client.upload_pkg(tenant_id=tenant, pkg=build_package("0.0.1"), verify_signature=False)
        assert decoded.unique_identifier.startswith("e2etest/searcher:0.0.1@")
        assert decoded.manifest.name == "searcher" and decoded.verification is None
        task = await client.install_from_identifiers(tenant_id=tenant, identifiers=[decoded.unique_identifier],
                                                     source=PluginInstallationSource.Package, metas=[{}])
        assert task.all_installed is False and task.task_id
        finished = await wait_for_task(client, daemon, tenant, task.task_id)
        assert finished.plugins[0].plugin_unique_identifier == decoded.unique_identifier
        state["v1"] = decoded.unique_identifier
        again = await client.install_from_identifiers(tenant, [decoded.unique_identifier], "package", [{}])
        assert again.all_installed is True and again.task_id == ""

    with_client(daemon, scenario)


def test_lookups(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    tenant, v1 = state["tenant"], state["v1"]

    async def scenario(client: AsyncDifyPluginClient) -> None:
        plugins = await client.list_plugins(tenant)
        assert [p.plugin_unique_identifier for p in plugins] == [v1]
        assert plugins[0].plugin_id == "e2etest/searcher" and plugins[0].version == "0.0.1"
        assert (await client.list_plugins_with_total(tenant, 1, 10)).total == 1
        # Independent look-ups, concurrently.
        manifest, decoded, readme, known, installations, providers, provider, existence = await asyncio.gather(
            client.fetch_plugin_manifest(tenant, v1),
            client.decode_plugin_from_identifier(tenant, v1),
            client.fetch_plugin_readme(tenant, v1, "en_US"),
            client.fetch_plugin_by_identifier(tenant, v1),
            client.fetch_plugin_installation_by_ids(tenant, ["e2etest/searcher"]),
            client.fetch_tool_providers(tenant),
            client.fetch_tool_provider(tenant, PROVIDER),
            client.check_tools_existence(tenant, [PROVIDER, "e2etest/searcher/nothing"]),
        )
        assert manifest.version == "0.0.1" and manifest.tool is not None
        assert decoded.unique_identifier == v1
        assert "Answers queries with canned results" in readme
        assert known is True
        assert [i.plugin_unique_identifier for i in installations] == [v1]
        assert [p.declaration.identity.name for p in providers] == [PROVIDER]
        assert {t.identity.name for t in providers[0].declaration.tools} == {"search", "fail", "report"}
        assert provider.declaration.tool("search") is not None
        assert existence == [True, False]

    with_client(daemon, scenario)


def test_invoke(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    tenant = state["tenant"]

    async def scenario(client: AsyncDifyPluginClient) -> None:
        stream = await client.invoke(tenant_id=tenant, user_id="u", tool_provider=PROVIDER, tool_name="search",
                                     credentials={}, tool_parameters={"query": "x", "limit": "3", "style": "loud"})
        messages = [m async for m in stream]
        texts = [m.message.text for m in messages if isinstance(m, TextInvokeMessage)]
        assert texts == ["RESULT 1 FOR X\n", "RESULT 2 FOR X\n", "RESULT 3 FOR X\n"]
        json_messages = [m for m in messages if isinstance(m, JsonInvokeMessage)]
        assert [m.message.data for m in json_messages] == [{"query": "x", "limit": 3, "types": {"limit": "int"}}]

        with pytest.raises(ToolParameterValidationError):
            await client.invoke(tenant, "u", PROVIDER, "search", {}, {"query": "x", "style": "quiet"})

        received = []
        with pytest.raises(PluginInvokeError) as caught:
            async for message in await client.invoke(tenant, "u", PROVIDER, "fail", {}, {}):
                received.append(message)
        assert [m.message.text for m in received if m.type == "text"] == ["about to fail\n"]
        assert (caught.value.inner_error_type, caught.value.inner_message) == ("RuntimeError", "search backend exploded")

        with pytest.raises(PluginNotFoundError):
            async for _ in await client.invoke(tenant, "u", "e2etest/absent/search", "search", {}, {"query": "x"},
                                               validate_parameters=False):
                pass

        size = 20000  # the SDK sends blobs in 8 KiB blob_chunk messages
        report = [m async for m in await client.invoke(tenant, "u", PROVIDER, "report", {},
                                                       {"size": str(size), "compressed": "yes"})]
        assert [type(m) for m in report] == [LinkInvokeMessage, VariableInvokeMessage, BlobInvokeMessage]
        link, variable, blob = report
        assert isinstance(link, LinkInvokeMessage) and link.message.text == "https://example.invalid/report"
        assert isinstance(variable, VariableInvokeMessage) and variable.message.variable_value is True
        assert isinstance(blob, BlobInvokeMessage) and blob.message.blob == bytes(i % 251 for i in range(size))

    with_client(daemon, scenario)


def test_daemon_errors_map_to_named_exceptions(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    tenant, v1 = state["tenant"], state["v1"]

    async def scenario(client: AsyncDifyPluginClient) -> None:
        with pytest.raises(PluginDaemonBadRequestError, match="bad signature"):
            await client.upload_pkg(tenant, build_package("0.0.9"), verify_signature=True)
        unknown = "e2etest/unknown:0.0.1@" + "0" * 64
        with pytest.raises(PluginNotFoundError, match="plugin not found") as caught:
            await client.fetch_plugin_manifest(tenant, unknown)
        assert isinstance(caught.value, PluginDaemonBadRequestError) and caught.value.code == -400
        with pytest.raises(PluginDaemonInternalServerError, match="record not found"):
            await client.fetch_plugin_installation_task(tenant, str(uuid.uuid4()))
        with pytest.raises(PluginNotFoundError):
            await client.fetch_tool_provider(tenant, "e2etest/searcher/nothing")
        assert await client.fetch_plugin_by_identifier(tenant, unknown) is False
        assert await client.validate_provider_credentials(tenant, "u", PROVIDER, {}) is True
        assert await client.get_runtime_parameters(tenant, "u", PROVIDER, {}, "search") == []
        other = str(uuid.uuid4())
        assert await client.list_plugins(other) == []
        missing = await client.fetch_missing_dependencies(other, plugin_unique_identifiers=[v1])
        assert [m.current_identifier for m in missing] == [""]

    with_client(daemon, scenario)


def test_direct_invocation_and_admin_api(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    v1 = state["v1"]
    other_tenant = str(uuid.uuid4())
    data = {"provider": "search", "tool": "search", "credentials": {}, "tool_parameters": {"query": "av2"}}

    async def scenario(client: AsyncDifyPluginClient) -> None:
        items = [item async for item in await client.invoke_v2(v1, "tool/invoke", other_tenant, data, user_id="u")]
        assert [i["message"]["text"] for i in items if i["type"] == "text"] == ["result 1 for av2\n", "result 2 for av2\n"]
        assert (await client.extract_v2(v1))["unique_identifier"] == v1
        events = [e async for e in await client.admin_reinstall_serverless(ADMIN_API_KEY, v1)]
        assert events == [{"event": "error", "data": "reinstall is not supported on local platform"}]
        with pytest.raises(PluginDaemonInternalServerError, match="not supported on local platform"):
            await client.admin_switch_serverless_endpoint(ADMIN_API_KEY, v1, "fn", "http://127.0.0.1:9")

    with_client(daemon, scenario)


def test_wrong_key_is_rejected(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, key="not-the-key", timeout=10)) as bad:
            await bad.list_plugins(state["tenant"])

    with pytest.raises(PluginDaemonUnauthorizedError):
        asyncio.run(scenario())


def test_missing_dependencies_upgrade_and_uninstall(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    tenant, v1 = state["tenant"], state["v1"]

    async def scenario(client: AsyncDifyPluginClient) -> None:
        v2 = (await client.upload_pkg(tenant, build_package("0.0.2"))).unique_identifier
        assert v2.startswith("e2etest/searcher:0.0.2@") and v2 != v1
        missing = await client.fetch_missing_dependencies(tenant, [v1, v2])
        assert [(m.plugin_unique_identifier, m.current_identifier) for m in missing] == [(v2, v1)]

        started = await client.upgrade_plugin(tenant, original_plugin_unique_identifier=v1,
                                              new_plugin_unique_identifier=v2,
                                              source=PluginInstallationSource.Package, meta={})
        if not started.all_installed:
            await wait_for_task(client, daemon, tenant, started.task_id)
        plugins = await client.list_plugins(tenant)
        assert [p.plugin_unique_identifier for p in plugins] == [v2]
        texts = [m.message.text async for m in await client.invoke(tenant, "u", PROVIDER, "search", {},
                                                                    {"query": "v2"}) if m.type == "text"]
        assert texts == ["result 1 for v2\n", "result 2 for v2\n"]

        assert all(t.tenant_id in (None, tenant) for t in await client.fetch_plugin_installation_tasks(tenant, 1, 256))
        assert await client.delete_all_plugin_installation_task_items(tenant) is True
        assert await client.fetch_plugin_installation_tasks(tenant, 1, 256) == []

        assert await client.uninstall(tenant, plugin_installation_id=plugins[0].installation_id) is True
        assert await client.list_plugins(tenant) == []
        gone = await client.fetch_missing_dependencies(tenant, [v2])
        assert [(m.plugin_unique_identifier, m.current_identifier) for m in gone] == [(v2, "")]
        assert await client.check_tools_existence(tenant, [PROVIDER]) == [False]

    with_client(daemon, scenario)
