"""Management routes against the fixture daemon: request shapes, response models, pagination, slowness."""

from __future__ import annotations

import json
import time

import pytest

from dify_plugin_client import (
    DifyPluginClient,
    PluginConfig,
    PluginDaemonInnerError,
    PluginInstallationSource,
)
from dify_plugin_client.entities import (
    PluginDecodeResponse,
    PluginEntity,
    PluginInstallTask,
    PluginListResponse,
)
from dify_plugin_client.entities.bundle import (
    GithubBundleDependency,
    MarketplaceBundleDependency,
    PackageBundleDependency,
)
from dify_plugin_client.entities.daemon import PluginInstallTaskStatus
from dify_plugin_client.entities.plugin import PluginCategory
from daemon_payloads import (
    IDENTIFIER,
    IDENTIFIER_V2,
    TENANT,
    declaration,
    install_task,
    plugin_entity,
    tool_provider_row,
)
from fixture_server import FixtureDaemon, RecordedRequest, Reply, success_body

M = f"/plugin/{TENANT}/management"


def _multipart_field(request: RecordedRequest, name: str) -> tuple[str, bytes]:
    """Return (part headers, part body) of the multipart field ``name``."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    for part in request.body.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if f'name="{name}"'.encode() in head:
            return head.decode(), body.rsplit(b"\r\n", 1)[0]
    raise AssertionError(f"multipart field {name} missing")


# ------------------------------------------------------------------------------------------ happy


def test_upload_pkg_sends_multipart_and_parses_decode_response(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("POST", f"{M}/install/upload/package",
                {"unique_identifier": IDENTIFIER, "manifest": declaration(), "verification": None})
    decoded = client.upload_pkg(tenant_id=TENANT, pkg=b"PK\x03\x04zipbytes", verify_signature=False)
    assert isinstance(decoded, PluginDecodeResponse)
    assert decoded.unique_identifier == IDENTIFIER
    assert decoded.manifest.category == PluginCategory.Tool
    assert decoded.manifest.tool is not None and decoded.manifest.tool.tools[1].parameters[3].options[0].value == "fast"
    assert decoded.verification is None
    request = daemon.requests_to(f"{M}/install/upload/package")[0]
    head, body = _multipart_field(request, "dify_pkg")
    assert 'filename="dify_pkg"' in head and "application/octet-stream" in head
    assert body == b"PK\x03\x04zipbytes"
    assert _multipart_field(request, "verify_signature")[1] == b"false"
    assert request.headers["x-api-key"] == "plugin-api-key"


def test_upload_pkg_verify_signature_true_and_verification(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("POST", f"{M}/install/upload/package", {
        "unique_identifier": IDENTIFIER, "manifest": declaration(),
        "verification": {"authorized_category": "langgenius"}})
    decoded = client.upload_pkg(TENANT, b"x", verify_signature=True)
    assert decoded.verification is not None and decoded.verification.authorized_category == "langgenius"
    assert _multipart_field(daemon.requests[-1], "verify_signature")[1] == b"true"


def test_upload_bundle_returns_typed_dependencies(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("POST", f"{M}/install/upload/bundle", [
        {"type": "github", "value": {"repo_address": "https://github.com/a/b", "repo": "a/b",
                                     "release": "v1", "packages": "b.difypkg"}},
        {"type": "marketplace", "value": {"organization": "langgenius", "plugin": "openai", "version": "0.0.19"}},
        {"type": "package", "value": {"unique_identifier": IDENTIFIER, "manifest": declaration()}},
    ])
    deps = client.upload_bundle(TENANT, b"bundle", verify_signature=False)
    assert [d.type.value for d in deps] == ["github", "marketplace", "package"]
    assert isinstance(deps[0].value, GithubBundleDependency)
    assert isinstance(deps[1].value, MarketplaceBundleDependency) and deps[1].value.plugin == "openai"
    assert isinstance(deps[2].value, PackageBundleDependency) and deps[2].value.manifest.name == "searcher"
    head, body = _multipart_field(daemon.requests[-1], "dify_bundle")
    assert 'filename="dify_bundle"' in head and body == b"bundle"


def test_install_from_identifiers_body_and_task_polling(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    task_id = "0192a3b4-0000-7000-8000-0000000000ff"
    daemon.json("POST", f"{M}/install/identifiers", {"all_installed": False, "task_id": task_id})
    daemon.json("GET", f"{M}/install/tasks/{task_id}", install_task("failed", "failed", "uv sync failed"))
    task = client.install_from_identifiers(tenant_id=TENANT, identifiers=[IDENTIFIER],
                                           source=PluginInstallationSource.Package, metas=[{}])
    assert task.all_installed is False and task.task_id == task_id
    request = daemon.requests_to(f"{M}/install/identifiers")[0]
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"plugin_unique_identifiers": [IDENTIFIER], "source": "package", "metas": [{}]}
    t = client.fetch_plugin_installation_task(TENANT, task.task_id)
    assert isinstance(t, PluginInstallTask)
    assert t.status == PluginInstallTaskStatus.Failed
    assert t.plugins[0].message == "uv sync failed"
    assert t.plugins[0].labels.en_US == "Searcher"


def test_install_from_identifiers_length_mismatch_is_rejected_before_any_request(
    daemon: FixtureDaemon, client: DifyPluginClient
) -> None:
    with pytest.raises(ValueError, match="same length"):
        client.install_from_identifiers(TENANT, [IDENTIFIER, IDENTIFIER_V2], PluginInstallationSource.Package, [{}])
    with pytest.raises(ValueError, match="single string"):
        client.install_from_identifiers(TENANT, IDENTIFIER, "package", [{}])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source"):
        client.install_from_identifiers(TENANT, [IDENTIFIER], "ftp", [{}])
    assert daemon.requests == []


def test_task_listing_and_deletion_routes(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    task_id = "0192a3b4-0000-7000-8000-0000000000ff"
    daemon.json("GET", f"{M}/install/tasks", [install_task("success", "success", "installed")])
    daemon.json("POST", f"{M}/install/tasks/{task_id}/delete", True)
    daemon.json("POST", f"{M}/install/tasks/delete_all", True)
    daemon.json("POST", f"{M}/install/tasks/{task_id}/delete/*", True)
    tasks = client.fetch_plugin_installation_tasks(TENANT, 2, 10)
    assert tasks[0].status == "success" and tasks[0].completed_plugins == 1
    assert daemon.requests[-1].query == {"page": ["2"], "page_size": ["10"]}
    assert client.delete_plugin_installation_task(TENANT, task_id) is True
    assert client.delete_all_plugin_installation_task_items(TENANT) is True
    assert client.delete_plugin_installation_task_item(TENANT, task_id, IDENTIFIER) is True
    # The identifier goes raw into the path, with its '/', ':' and '@'.
    assert daemon.requests[-1].raw_path == f"{M}/install/tasks/{task_id}/delete/{IDENTIFIER}"
    requests_so_far = len(daemon.requests)
    for bad_task in ("", "a/b", "a?b", "a#b"):
        with pytest.raises(ValueError):
            client.fetch_plugin_installation_task(TENANT, bad_task)
    with pytest.raises(ValueError):
        client.delete_plugin_installation_task_item(TENANT, task_id, "a/b:1.0.0@x?y")
    with pytest.raises(ValueError):
        client.list_plugins("tenant/with/slash")
    assert len(daemon.requests) == requests_so_far


def test_missing_dependencies_batch_uninstall_upgrade(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("POST", f"{M}/installation/missing", [
        {"plugin_unique_identifier": IDENTIFIER_V2, "current_identifier": IDENTIFIER},
        {"plugin_unique_identifier": "x/y:1.0.0@" + "b" * 64, "current_identifier": ""}])
    daemon.json("POST", f"{M}/installation/fetch/batch", [plugin_entity()])
    daemon.json("POST", f"{M}/uninstall", True)
    daemon.json("POST", f"{M}/install/upgrade", {"all_installed": True, "task_id": ""})

    missing = client.fetch_missing_dependencies(TENANT, [IDENTIFIER_V2, "x/y:1.0.0@" + "b" * 64])
    assert [m.current_identifier for m in missing] == [IDENTIFIER, ""]
    assert daemon.requests[-1].json() == {"plugin_unique_identifiers": [IDENTIFIER_V2, "x/y:1.0.0@" + "b" * 64]}

    installations = client.fetch_plugin_installation_by_ids(TENANT, ["acme/searcher"])
    assert installations[0].plugin_id == "acme/searcher" and installations[0].source == "package"
    assert daemon.requests[-1].json() == {"plugin_ids": ["acme/searcher"]}

    assert client.uninstall(TENANT, "0192a3b4-0000-7000-8000-000000000000") is True
    assert daemon.requests[-1].json() == {"plugin_installation_id": "0192a3b4-0000-7000-8000-000000000000"}

    started = client.upgrade_plugin(TENANT, IDENTIFIER, IDENTIFIER_V2, PluginInstallationSource.Package, {})
    assert started.all_installed is True and started.task_id == ""
    assert daemon.requests[-1].json() == {
        "original_plugin_unique_identifier": IDENTIFIER,
        "new_plugin_unique_identifier": IDENTIFIER_V2,
        "source": "package",
        "meta": {},
    }


def test_list_manifest_decode_identifier(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", f"{M}/list", {"list": [plugin_entity()], "total": 1})
    daemon.json("GET", f"{M}/fetch/manifest", declaration())
    daemon.json("GET", f"{M}/decode/from_identifier",
                {"unique_identifier": IDENTIFIER, "manifest": declaration(), "verification": None})
    daemon.json("GET", f"{M}/fetch/identifier", True)

    plugins = client.list_plugins(TENANT)
    assert isinstance(plugins[0], PluginEntity)
    assert plugins[0].installation_id == plugins[0].id
    assert plugins[0].declaration.tool is not None and plugins[0].declaration.tool.plugin_id == "acme/searcher"
    assert plugins[0].created_at.year == 2025
    assert daemon.requests[-1].query == {"page": ["1"], "page_size": ["256"], "response_type": ["paged"]}

    manifest = client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert manifest.name == "searcher" and manifest.meta.runner is not None
    assert manifest.meta.runner.entrypoint == "main"
    assert daemon.requests[-1].query == {"plugin_unique_identifier": [IDENTIFIER]}

    decoded = client.decode_plugin_from_identifier(TENANT, IDENTIFIER)
    assert decoded.unique_identifier == IDENTIFIER
    assert daemon.requests[-1].query == {"plugin_unique_identifier": [IDENTIFIER]}

    assert client.fetch_plugin_by_identifier(TENANT, IDENTIFIER) is True


def test_list_accepts_bare_list_payload(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", f"{M}/list", [plugin_entity(0), plugin_entity(1)])
    result = client.list_plugins_with_total(TENANT, 1, 10)
    assert result.total == 2 and len(result.list) == 2


def test_readme_content_and_not_found_is_empty(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", f"{M}/fetch/readme", {"content": "# Searcher\n", "language": "ja_JP"})
    assert client.fetch_plugin_readme(TENANT, IDENTIFIER, "ja_JP") == "# Searcher\n"
    assert daemon.requests[-1].query["language"] == ["ja_JP"]
    daemon.error("GET", f"{M}/fetch/readme", -404, "PluginDaemonNotFoundError",
                 "no readme content available for this plugin")
    assert client.fetch_plugin_readme(TENANT, IDENTIFIER, "en_US") == ""


def test_tool_providers_are_named_and_refs_resolved(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", f"{M}/tools", [tool_provider_row()])
    providers = client.fetch_tool_providers(TENANT)
    assert daemon.requests[-1].query == {"page": ["1"], "page_size": ["256"]}
    provider = providers[0]
    assert provider.provider == "search"
    assert provider.declaration.identity.name == "acme/searcher/search"
    assert [t.identity.provider for t in provider.declaration.tools] == ["acme/searcher/search"] * 2
    schema = provider.declaration.tools[0].output_schema
    assert schema is not None
    assert schema["properties"]["file"]["type"] == "object"
    assert "$ref" not in schema["properties"]["file"]
    assert schema["properties"]["hits"]["items"] == {"type": "object", "properties": {"title": {"type": "string"}}}


def test_fetch_tool_provider_and_check_existence(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", f"{M}/tool", tool_provider_row())
    daemon.json("POST", f"{M}/tools/check_existence", [True, False])
    provider = client.fetch_tool_provider(TENANT, "acme/searcher/search")
    assert daemon.requests[-1].query == {"provider": ["search"], "plugin_id": ["acme/searcher"]}
    assert provider.declaration.identity.name == "acme/searcher/search"
    assert provider.declaration.tool("typed") is not None
    exists = client.check_tools_existence(
        TENANT, [{"plugin_id": "acme/searcher", "provider_name": "search"}, "acme/other/thing"]
    )
    assert exists == [True, False]
    assert daemon.requests[-1].json() == {"provider_ids": [
        {"plugin_id": "acme/searcher", "provider_name": "search"},
        {"plugin_id": "acme/other", "provider_name": "thing"}]}
    with pytest.raises(ValueError, match="provider id"):
        client.fetch_tool_provider(TENANT, "a/b/c/d")


# ------------------------------------------------------------------------------------------ pagination


def test_pagination_scenario_walks_every_page(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    everything = [plugin_entity(i) for i in range(5)]

    def page(request: RecordedRequest) -> Reply:
        number, size = int(request.query["page"][0]), int(request.query["page_size"][0])
        chunk = everything[(number - 1) * size: number * size]
        return Reply(body=success_body({"list": chunk, "total": len(everything)}))

    daemon.on("GET", f"{M}/list", page)
    seen: list[str] = []
    number = 1
    while True:
        result = client.list_plugins_with_total(TENANT, number, 2)
        assert isinstance(result, PluginListResponse) and result.total == 5
        if not result.list:
            break
        seen += [p.installation_id for p in result.list]
        number += 1
    assert number == 4
    assert seen == [p["installation_id"] for p in everything]
    with pytest.raises(ValueError):
        client.list_plugins_with_total(TENANT, 0, 2)
    with pytest.raises(ValueError):
        client.list_plugins_with_total(TENANT, 1, 257)


# ------------------------------------------------------------------------------------------ slow


def test_slow_scenario_times_out_with_inner_error(daemon: FixtureDaemon) -> None:
    daemon.on("GET", f"{M}/list", Reply(body=success_body({"list": [], "total": 0}), delay=2.0))
    with DifyPluginClient(PluginConfig(url=daemon.url, timeout=0.3)) as fast:
        started = time.monotonic()
        with pytest.raises(PluginDaemonInnerError) as caught:
            fast.list_plugins(TENANT)
        assert time.monotonic() - started < 1.8
    assert "ReadTimeout" in str(caught.value)


def test_slow_stream_within_read_timeout_completes(daemon: FixtureDaemon) -> None:
    chunk = b'data: {"code":0,"message":"success","data":{"type":"text","message":{"text":"x"},"meta":null}}\n\n'
    daemon.sse("POST", f"/plugin/{TENANT}/dispatch/tool/invoke", [chunk] * 4, delay=0.2)
    with DifyPluginClient(PluginConfig(url=daemon.url, timeout=0.6)) as c:
        started = time.monotonic()
        text = "".join(m.message.text for m in c.invoke(  # type: ignore[union-attr]
            TENANT, "u", "acme/searcher/search", "search", {}, {}, validate_parameters=False))
        assert time.monotonic() - started >= 0.7  # longer than the timeout as a whole
    assert text == "xxxx"


def test_httpx_timeout_object_is_accepted(daemon: FixtureDaemon) -> None:
    import httpx

    daemon.json("GET", f"{M}/fetch/identifier", False)
    with DifyPluginClient(PluginConfig(url=daemon.url, timeout=httpx.Timeout(5.0, connect=1.0))) as c:
        assert c.fetch_plugin_by_identifier(TENANT, IDENTIFIER) is False
    with pytest.raises(ValueError):
        PluginConfig(url=daemon.url, timeout=-1)
    with pytest.raises(ValueError):
        PluginConfig(url="localhost:5002")


def test_health_check(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.on("GET", "/health/check", Reply(body=json.dumps({"status": "ok"}).encode()))
    assert client.health_check()["status"] == "ok"


def test_wait_for_installation_task_polls_until_finished(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    snapshots = iter([install_task(), install_task(), install_task("success", "success", "installed")])
    daemon.on("GET", f"{M}/install/tasks/t9", lambda _r: Reply(body=success_body(next(snapshots))))
    seen: list[str] = []
    task = client.wait_for_installation_task(TENANT, "t9", poll_interval=0.01, timeout=10,
                                             on_update=lambda t: seen.append(t.status.value))
    assert task.status == PluginInstallTaskStatus.Success
    assert seen == ["running", "running", "success"]
    daemon.json("GET", f"{M}/install/tasks/t10", install_task())
    with pytest.raises(TimeoutError, match="did not finish within 0.2s"):
        client.wait_for_installation_task(TENANT, "t10", poll_interval=0.05, timeout=0.2)
