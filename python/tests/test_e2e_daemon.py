"""End to end: the Python client (library and CLI) against the real daemon running a real SDK tool plugin.

The tests share one daemon and run in file order: upload and install, look-ups, invocation, missing
dependencies, upgrade, uninstall. Every wait is bounded.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon_process import ADMIN_API_KEY, DaemonProcess, build_package
from dify_plugin_client import (
    DifyPluginClient,
    PluginConfig,
    PluginDaemonBadRequestError,
    PluginDaemonInternalServerError,
    PluginDaemonUnauthorizedError,
    PluginInvokeError,
    PluginNotFoundError,
    ToolParameterValidationError,
)
from dify_plugin_client.cli import main as cli_main
from dify_plugin_client.entities.daemon import PluginInstallTask, PluginInstallTaskStatus
from dify_plugin_client.entities.plugin import PluginInstallationSource
from dify_plugin_client.entities.tool import BlobMessage, JsonMessage, TextMessage, VariableMessage

IDENTIFIER_PATTERN = re.compile(
    r"^(?:([a-z0-9_-]{1,64})/)?([a-z0-9_-]{1,255}):([0-9]{1,4})(\.[0-9]{1,4}){1,3}(-\w{1,16})?@[a-f0-9]{32,64}$"
)
INSTALL_TIMEOUT = 300.0
PROVIDER = "e2etest/searcher/search"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path_factory.mktemp("daemon")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[DifyPluginClient]:
    with DifyPluginClient(PluginConfig(url=daemon.url, key=daemon.key, timeout=60.0)) as c:
        yield c


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {"tenant": str(uuid.uuid4())}


def wait_for_task(client: DifyPluginClient, daemon: DaemonProcess, tenant: str, task_id: str) -> PluginInstallTask:
    deadline = time.monotonic() + INSTALL_TIMEOUT
    while True:
        t = client.fetch_plugin_installation_task(tenant, task_id)
        if t.status in (PluginInstallTaskStatus.Success, PluginInstallTaskStatus.Failed):
            assert t.status == PluginInstallTaskStatus.Success, (
                f"install task failed: {[p.message for p in t.plugins]}\n{daemon.log_tail()}"
            )
            return t
        assert time.monotonic() < deadline, f"install task still {t.status} after {INSTALL_TIMEOUT:g}s"
        time.sleep(0.5)


def test_upload_and_install_as_in_the_readme(
    daemon: DaemonProcess, client: DifyPluginClient, state: dict[str, Any]
) -> None:
    tenant = state["tenant"]
    pkg_bytes = build_package("0.0.1")
    decoded = client.upload_pkg(tenant_id=tenant, pkg=pkg_bytes, verify_signature=False)
    assert IDENTIFIER_PATTERN.match(decoded.unique_identifier), decoded.unique_identifier
    assert decoded.unique_identifier.startswith("e2etest/searcher:0.0.1@")
    assert decoded.manifest.name == "searcher" and decoded.manifest.category == "tool"
    assert decoded.verification is None
    task = client.install_from_identifiers(tenant_id=tenant, identifiers=[decoded.unique_identifier],
                                           source=PluginInstallationSource.Package, metas=[{}])
    assert task.all_installed is False and task.task_id
    t = wait_for_task(client, daemon, tenant, task.task_id)
    assert t.plugins[0].plugin_unique_identifier == decoded.unique_identifier
    state["v1"] = decoded.unique_identifier
    # A second install of the same plugin reports everything installed, without a task.
    again = client.install_from_identifiers(tenant, [decoded.unique_identifier], "package", [{}])
    assert again.all_installed is True and again.task_id == ""


def test_lookups(client: DifyPluginClient, state: dict[str, Any]) -> None:
    tenant, v1 = state["tenant"], state["v1"]
    plugins = client.list_plugins(tenant)
    assert [p.plugin_unique_identifier for p in plugins] == [v1]
    assert plugins[0].plugin_id == "e2etest/searcher" and plugins[0].source == "package"
    assert plugins[0].version == "0.0.1"
    state["installation_id"] = plugins[0].installation_id
    paged = client.list_plugins_with_total(tenant, 1, 10)
    assert paged.total == 1

    manifest = client.fetch_plugin_manifest(tenant, v1)
    assert manifest.version == "0.0.1" and manifest.tool is not None
    assert client.decode_plugin_from_identifier(tenant, v1).unique_identifier == v1
    assert "Answers queries with canned results" in client.fetch_plugin_readme(tenant, v1, "en_US")
    assert client.fetch_plugin_by_identifier(tenant, v1) is True

    installations = client.fetch_plugin_installation_by_ids(tenant, ["e2etest/searcher"])
    assert [i.plugin_unique_identifier for i in installations] == [v1]

    providers = client.fetch_tool_providers(tenant)
    assert [p.declaration.identity.name for p in providers] == [PROVIDER]
    assert {t.identity.name for t in providers[0].declaration.tools} == {"search", "fail", "report"}
    provider = client.fetch_tool_provider(tenant, PROVIDER)
    assert provider.declaration.tool("search") is not None
    assert client.check_tools_existence(tenant, [PROVIDER, "e2etest/searcher/nothing"]) == [True, False]


def test_invoke_example_as_written(client: DifyPluginClient, state: dict[str, Any]) -> None:
    tenant = state["tenant"]
    printed = io.StringIO()
    for msg in client.invoke(tenant_id=tenant, user_id="u", tool_provider=PROVIDER,
                             tool_name="search", credentials={}, tool_parameters={"query": "hi"}):
        if msg.type == "text":
            print(msg.message.text, end="", file=printed)
    assert printed.getvalue() == "result 1 for hi\nresult 2 for hi\n"


def test_direct_invocation_and_admin_api(client: DifyPluginClient, state: dict[str, Any]) -> None:
    v1 = state["v1"]
    other_tenant = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # did not install the plugin: /v2 runs for it anyway
    data = {"provider": "search", "tool": "search", "credentials": {}, "credential_type": "api-key",
            "tool_parameters": {"query": "v2"}}
    items = list(client.invoke_v2(v1, "/tool/invoke", other_tenant, data, user_id="u"))
    assert [i["message"]["text"] for i in items if i["type"] == "text"] == ["result 1 for v2\n", "result 2 for v2\n"]
    absent = "e2etest/absent:0.0.1@" + "0" * 64
    with pytest.raises(PluginDaemonInternalServerError, match="plugin runtime not found"):
        list(client.invoke_v2(absent, "/tool/invoke", other_tenant, data))
    extracted = client.extract_v2(v1)
    assert extracted["unique_identifier"] == v1 and extracted["manifest"]["name"] == "searcher"

    events = list(client.admin_reinstall_serverless(ADMIN_API_KEY, v1))
    assert events == [{"event": "error", "data": "reinstall is not supported on local platform"}]
    with pytest.raises(PluginDaemonInternalServerError, match="not supported on local platform"):
        client.admin_switch_serverless_endpoint(ADMIN_API_KEY, v1, "fn", "http://127.0.0.1:9")
    with pytest.raises(PluginDaemonUnauthorizedError):
        client.admin_switch_serverless_endpoint("wrong-admin-key", v1, "fn", "http://127.0.0.1:9")


def test_cli_direct_invocation_and_admin_commands(daemon: DaemonProcess, state: dict[str, Any],
                                                 tmp_path: Path) -> None:
    """``invoke-v2``, ``extract`` and ``admin``, with the Rust CLI's flags, outputs and exit codes."""
    v1 = state["v1"]
    other_tenant = str(uuid.uuid4())  # did not install the plugin
    env = {"HOME": str(tmp_path), "DIFY_PLUGIN_DAEMON_URL": daemon.url, "DIFY_PLUGIN_DAEMON_KEY": daemon.key}

    def cli(*argv: str, environ: dict[str, str] = env) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli_main(list(argv), environ=environ, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    data = {"provider": "search", "tool": "search", "credentials": {}, "credential_type": "api-key",
            "tool_parameters": {"query": "cli-v2"}}
    invoke = ["invoke-v2", "--identifier", v1, "--route", "/tool/invoke", "--data", json.dumps(data),
              "--user", "v2-cli", "--tenant", other_tenant]
    code, out, err = cli(*invoke)
    assert code == 0, err + daemon.log_tail()
    items = [json.loads(line) for line in out.splitlines()]  # one compact JSON item per line
    assert [i["message"]["text"] for i in items if i["type"] == "text"] == ["result 1 for cli-v2\n",
                                                                           "result 2 for cli-v2\n"]
    code, out, err = cli(*invoke, "-o", "yaml")
    assert code == 0, err
    documents = [d for d in yaml.safe_load_all(out) if d is not None]
    assert [d for d in documents if d["type"] == "text"][0]["message"]["text"] == "result 1 for cli-v2\n"
    # The tenant is required; the data must be a JSON object; a plugin failure is exit 1.
    assert cli(*invoke[:-2])[0] == 2
    code, _, err = cli("invoke-v2", "--identifier", v1, "--route", "/tool/invoke", "--data", "[1]",
                       "--tenant", other_tenant)
    assert (code, err) == (2, "error: --data must be a JSON object\n")
    absent = "e2etest/absent:0.0.1@" + "0" * 64
    code, _, err = cli("invoke-v2", "--identifier", absent, "--route", "tool/invoke", "--tenant", other_tenant)
    assert code == 1 and "plugin runtime not found" in err, err

    # extract needs no tenant: text is YAML, -o json the daemon's object.
    code, out, err = cli("extract", v1, "-o", "json")
    assert code == 0, err
    extracted = json.loads(out)
    assert extracted["unique_identifier"] == v1 and extracted["manifest"]["name"] == "searcher"
    code, out, err = cli("extract", v1)
    assert code == 0 and yaml.safe_load(out) == extracted, err

    # admin: the key from the flag or the environment; the local platform answers with an `error` event.
    code, out, err = cli("admin", "--admin-key", ADMIN_API_KEY, "reinstall", "--identifier", v1)
    assert (code, out) == (1, "error: reinstall is not supported on local platform\n"), err
    assert err == "error: reinstall is not supported on local platform\n"
    code, out, err = cli("admin", "reinstall", "--identifier", v1, "-o", "json",
                         environ={**env, "DIFY_PLUGIN_ADMIN_API_KEY": ADMIN_API_KEY})
    assert code == 1 and [json.loads(line) for line in out.splitlines()] == [
        {"event": "error", "data": "reinstall is not supported on local platform"}], err
    code, out, err = cli("admin", "--admin-key", ADMIN_API_KEY, "switch-endpoint", "--identifier", v1,
                         "--function-name", "fn", "--function-url", "http://127.0.0.1:9")
    assert code == 1 and "switch serverless runtime is not supported on local platform" in err, err
    code, out, err = cli("admin", "reinstall", "--identifier", v1)
    assert (code, out) == (2, ""), err
    assert "--admin-key or DIFY_PLUGIN_ADMIN_API_KEY" in err
    code, out, err = cli("admin", "--admin-key", "wrong-admin-key", "reinstall", "--identifier", v1)
    assert (code, out) == (4, ""), err
    assert err.startswith("error: the daemon rejected the admin API key"), err
    code, _, err = cli("admin", "--admin-key", "wrong-admin-key", "switch-endpoint", "--identifier", v1,
                       "--function-name", "fn", "--function-url", "http://127.0.0.1:9")
    assert code == 4, err


def test_invoke_casts_parameters_and_reports_plugin_errors(client: DifyPluginClient, state: dict[str, Any]) -> None:
    tenant = state["tenant"]
    messages = list(client.invoke(tenant, "u", PROVIDER, "search", {},
                                  {"query": "x", "limit": "3", "style": "loud"}))
    texts = [m.message.text for m in messages if m.type == "text"]
    assert texts == ["RESULT 1 FOR X\n", "RESULT 2 FOR X\n", "RESULT 3 FOR X\n"]
    json_messages = [m for m in messages if m.type == "json"]
    assert isinstance(json_messages[0].message, JsonMessage)
    assert json_messages[0].message.json_object == {"query": "x", "limit": 3, "types": {"limit": "int"}}

    with pytest.raises(ToolParameterValidationError):
        client.invoke(tenant, "u", PROVIDER, "search", {}, {"query": "x", "style": "quiet"})

    received = []
    with pytest.raises(PluginInvokeError) as caught:
        for message in client.invoke(tenant, "u", PROVIDER, "fail", {}, {}):
            received.append(message)
    assert [m.message.text for m in received] == ["about to fail\n"]
    assert caught.value.inner_error_type == "RuntimeError"
    assert caught.value.inner_message == "search backend exploded"

    with pytest.raises(PluginNotFoundError):
        list(client.invoke(tenant, "u", "e2etest/absent/search", "search", {}, {"query": "x"},
                           validate_parameters=False))


def test_invoke_merges_blob_chunks_from_the_sdk(client: DifyPluginClient, state: dict[str, Any]) -> None:
    size = 20000  # the SDK sends blobs in 8 KiB blob_chunk messages
    messages = list(client.invoke(state["tenant"], "u", PROVIDER, "report", {},
                                  {"size": str(size), "compressed": "yes"}))
    assert [m.type.value for m in messages] == ["link", "variable", "blob"]
    assert isinstance(messages[0].message, TextMessage)
    assert messages[0].message.text == "https://example.invalid/report"
    assert isinstance(messages[1].message, VariableMessage)
    assert (messages[1].message.variable_name, messages[1].message.variable_value) == ("compressed", True)
    assert isinstance(messages[2].message, BlobMessage)
    assert messages[2].message.blob == bytes(i % 251 for i in range(size))
    assert messages[2].meta is not None and messages[2].meta["mime_type"] == "application/octet-stream"


def test_cli_against_the_daemon(daemon: DaemonProcess, state: dict[str, Any], tmp_path: Path) -> None:
    tenant = state["tenant"]
    env = {"HOME": str(tmp_path), "DIFY_PLUGIN_DAEMON_URL": daemon.url, "DIFY_PLUGIN_DAEMON_KEY": daemon.key,
           "DIFY_PLUGIN_TENANT_ID": tenant}
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["list", "-o", "json"], environ=env, stdout=out, stderr=err) == 0, err.getvalue()
    assert json.loads(out.getvalue())["list"][0]["plugin_unique_identifier"] == state["v1"]
    out = io.StringIO()
    assert cli_main(["invoke", PROVIDER, "search", "-p", "query=cli"], environ=env, stdout=out, stderr=err) == 0
    assert out.getvalue().startswith("result 1 for cli\n")
    assert cli_main(["list", "--key", "wrong"], environ=env, stdout=io.StringIO(), stderr=io.StringIO()) == 4


def test_daemon_errors_map_to_named_exceptions(client: DifyPluginClient, state: dict[str, Any]) -> None:
    tenant, v1 = state["tenant"], state["v1"]
    with pytest.raises(PluginDaemonBadRequestError, match="bad signature"):
        client.upload_pkg(tenant, build_package("0.0.9"), verify_signature=True)
    unknown = "e2etest/unknown:0.0.1@" + "0" * 64
    with pytest.raises(PluginDaemonBadRequestError, match="plugin not found"):
        client.fetch_plugin_manifest(tenant, unknown)
    with pytest.raises(PluginDaemonInternalServerError, match="record not found"):
        client.fetch_plugin_installation_task(tenant, str(uuid.uuid4()))
    with pytest.raises(PluginNotFoundError):
        client.fetch_tool_provider(tenant, "e2etest/searcher/nothing")
    assert client.fetch_plugin_by_identifier(tenant, unknown) is False
    assert client.validate_provider_credentials(tenant, "u", PROVIDER, {}) is True
    assert client.get_runtime_parameters(tenant, "u", PROVIDER, {}, "search") == []
    # Another tenant sees nothing of this tenant's installation.
    other = str(uuid.uuid4())
    assert client.list_plugins(other) == []
    assert [m.current_identifier for m in client.fetch_missing_dependencies(other, [v1])] == [""]


def test_cli_commands_against_the_daemon(daemon: DaemonProcess, state: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "dify.json"
    config.write_text(json.dumps({"url": daemon.url, "key": daemon.key, "tenant": state["tenant"]}))

    def cli(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli_main([*argv, "--config", str(config)], environ={"HOME": str(tmp_path)}, stdout=out, stderr=err)
        return code, out.getvalue() + err.getvalue()

    v1 = state["v1"]
    assert cli("manifest", v1) == (0, "e2etest/searcher 0.0.1 (tool)\nE2E Searcher\n"
                                      "Tool plugin used by the Python client's end-to-end tests\n")
    code, out = cli("readme", v1)
    assert code == 0 and out.startswith("# E2E Searcher")
    assert cli("tools") == (0, f"{PROVIDER}\tsearch\n{PROVIDER}\tfail\n{PROVIDER}\treport\n")
    code, out = cli("missing", v1)
    assert code == 0 and out == ""
    code, out = cli("tasks", "-o", "json")
    assert code == 0 and isinstance(json.loads(out), list)
    code, out = cli("upload-pkg", str(_write(tmp_path / "p.difypkg", build_package("0.0.1"))))
    assert (code, out) == (0, v1 + "\n")


def test_cli_install_and_uninstall_in_another_tenant(daemon: DaemonProcess, state: dict[str, Any],
                                                     tmp_path: Path) -> None:
    tenant = str(uuid.uuid4())
    env = {"HOME": str(tmp_path), "DIFY_PLUGIN_DAEMON_URL": daemon.url, "DIFY_PLUGIN_DAEMON_KEY": daemon.key}
    package = _write(tmp_path / "p.difypkg", build_package("0.0.1"))
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["install", "--file", str(package), "--tenant", tenant, "--wait-timeout", "300", "-o", "json"],
                    environ=env, stdout=out, stderr=err)
    assert code == 0, err.getvalue() + daemon.log_tail()
    result = json.loads(out.getvalue())
    assert result["identifiers"] == [state["v1"]] and result["status"] == "success"
    with DifyPluginClient(PluginConfig(url=daemon.url, key=daemon.key, timeout=60)) as c:
        assert [p.plugin_unique_identifier for p in c.list_plugins(tenant)] == [state["v1"]]
        out = io.StringIO()
        assert cli_main(["uninstall", "e2etest/searcher", "--tenant", tenant], environ=env, stdout=out,
                        stderr=err) == 0, err.getvalue()
        assert out.getvalue() == "true\n"
        assert c.list_plugins(tenant) == []
        assert [p.plugin_unique_identifier for p in c.list_plugins(state["tenant"])] == [state["v1"]]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_wrong_key_is_rejected(daemon: DaemonProcess, state: dict[str, Any]) -> None:
    with DifyPluginClient(PluginConfig(url=daemon.url, key="not-the-key", timeout=10)) as bad:
        with pytest.raises(PluginDaemonUnauthorizedError):
            bad.list_plugins(state["tenant"])


def test_missing_dependencies_and_upgrade(
    daemon: DaemonProcess, client: DifyPluginClient, state: dict[str, Any]
) -> None:
    tenant, v1 = state["tenant"], state["v1"]
    v2 = client.upload_pkg(tenant, build_package("0.0.2")).unique_identifier
    assert v2.startswith("e2etest/searcher:0.0.2@") and v2 != v1
    missing = client.fetch_missing_dependencies(tenant, [v1, v2])
    assert [(m.plugin_unique_identifier, m.current_identifier) for m in missing] == [(v2, v1)]

    started = client.upgrade_plugin(tenant, v1, v2, PluginInstallationSource.Package, {})
    if not started.all_installed:
        wait_for_task(client, daemon, tenant, started.task_id)
    plugins = client.list_plugins(tenant)
    assert [p.plugin_unique_identifier for p in plugins] == [v2]
    assert client.fetch_plugin_manifest(tenant, v2).version == "0.0.2"
    state["installation_id"] = plugins[0].installation_id
    state["v2"] = v2


def test_invoke_after_upgrade(client: DifyPluginClient, state: dict[str, Any]) -> None:
    provider = client.fetch_tool_provider(state["tenant"], PROVIDER)
    assert provider.plugin_unique_identifier == state["v2"]
    texts = [m.message.text for m in client.invoke(state["tenant"], "u", PROVIDER, "search", {}, {"query": "v2"})
             if isinstance(m.message, TextMessage)]
    assert texts == ["result 1 for v2\n", "result 2 for v2\n"]


def test_tasks_and_uninstall(client: DifyPluginClient, state: dict[str, Any]) -> None:
    tenant, v2 = state["tenant"], state["v2"]
    tasks = client.fetch_plugin_installation_tasks(tenant, 1, 256)
    assert all(t.tenant_id in (None, tenant) for t in tasks)
    assert client.delete_all_plugin_installation_task_items(tenant) is True
    assert client.fetch_plugin_installation_tasks(tenant, 1, 256) == []

    assert client.uninstall(tenant, state["installation_id"]) is True
    assert client.list_plugins(tenant) == []
    missing = client.fetch_missing_dependencies(tenant, [v2])
    assert [(m.plugin_unique_identifier, m.current_identifier) for m in missing] == [(v2, "")]
    assert client.check_tools_existence(tenant, [PROVIDER]) == [False]
