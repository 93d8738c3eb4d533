"""Named fixture-daemon scenarios and the list of every client call they are exercised with.

Scenarios: ``happy`` (every route answers like a healthy daemon), ``unauthorized`` (the daemon expects
another key), ``pagination`` (5 plugins and 5 tasks served page by page), ``slow`` (every answer is late),
and one per daemon error type (``DAEMON_ERROR_SCENARIOS``: every route answers that error envelope with
the code and HTTP status the daemon uses for it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dify_plugin_client import DifyPluginClient, PluginInstallationSource
from daemon_payloads import (
    IDENTIFIER,
    IDENTIFIER_V2,
    TENANT,
    declaration,
    install_task,
    plugin_entity,
    tool_provider_row,
)
from fixture_server import FixtureDaemon, RecordedRequest, Reply, chunk_text, error_body, success_body

M = f"/plugin/{TENANT}/management"
TASK_ID = "0192a3b4-0000-7000-8000-0000000000ff"


def happy(server: FixtureDaemon) -> None:
    decode = {"unique_identifier": IDENTIFIER, "manifest": declaration(), "verification": None}
    server.json("POST", f"{M}/install/upload/package", decode)
    server.json("POST", f"{M}/install/upload/bundle",
                [{"type": "marketplace", "value": {"organization": "acme", "plugin": "searcher", "version": "0.0.1"}}])
    server.json("POST", f"{M}/install/identifiers", {"all_installed": False, "task_id": TASK_ID})
    server.json("POST", f"{M}/install/upgrade", {"all_installed": False, "task_id": TASK_ID})
    server.json("GET", f"{M}/install/tasks", [install_task()])
    server.json("GET", f"{M}/install/tasks/{TASK_ID}", install_task("success", "success", "installed"))
    server.json("POST", f"{M}/install/tasks/delete_all", True)
    server.json("POST", f"{M}/install/tasks/{TASK_ID}/delete", True)
    server.json("POST", f"{M}/install/tasks/{TASK_ID}/delete/*", True)
    server.json("POST", f"{M}/installation/missing",
                [{"plugin_unique_identifier": IDENTIFIER_V2, "current_identifier": IDENTIFIER}])
    server.json("POST", f"{M}/installation/fetch/batch", [plugin_entity()])
    server.json("POST", f"{M}/uninstall", True)
    server.json("GET", f"{M}/list", {"list": [plugin_entity()], "total": 1})
    server.json("GET", f"{M}/fetch/manifest", declaration())
    server.json("GET", f"{M}/decode/from_identifier", decode)
    server.json("GET", f"{M}/fetch/readme", {"content": "# Searcher", "language": "en_US"})
    server.json("GET", f"{M}/fetch/identifier", True)
    server.json("GET", f"{M}/tools", [tool_provider_row()])
    server.json("GET", f"{M}/tool", tool_provider_row())
    server.json("POST", f"{M}/tools/check_existence", [True])
    server.sse("POST", f"/plugin/{TENANT}/dispatch/tool/invoke", [chunk_text("hello")])
    server.sse("POST", f"/plugin/{TENANT}/dispatch/tool/validate_credentials",
               [b"data: " + success_body({"result": True}) + b"\n\n"])
    server.sse("POST", f"/plugin/{TENANT}/dispatch/tool/get_runtime_parameters",
               [b"data: " + success_body({"parameters": []}) + b"\n\n"])


def unauthorized(server: FixtureDaemon) -> None:
    happy(server)
    server.api_key = "the-daemon-expects-another-key"


def pagination(server: FixtureDaemon, total: int = 5) -> None:
    plugins = [plugin_entity(i) for i in range(total)]
    tasks = [dict(install_task(), id=f"task-{i}") for i in range(total)]

    def window(request: RecordedRequest) -> tuple[int, int]:
        page, size = int(request.query["page"][0]), int(request.query["page_size"][0])
        return (page - 1) * size, page * size

    def list_page(request: RecordedRequest) -> Reply:
        start, end = window(request)
        return Reply(body=success_body({"list": plugins[start:end], "total": len(plugins)}))

    def task_page(request: RecordedRequest) -> Reply:
        start, end = window(request)
        return Reply(body=success_body(tasks[start:end]))

    server.on("GET", f"{M}/list", list_page)
    server.on("GET", f"{M}/install/tasks", task_page)


def slow(server: FixtureDaemon, delay: float) -> None:
    happy(server)
    server.global_delay = delay


@dataclass(frozen=True)
class DaemonErrorScenario:
    error_type: str
    code: int
    http_status: int
    message: str


# Codes and HTTP statuses as the daemon produces them (docs/http.md §1.1, §1.3, §2.3, §4.2).
DAEMON_ERROR_SCENARIOS = [
    DaemonErrorScenario("PluginDaemonInternalServerError", -500, 200, "record not found"),
    DaemonErrorScenario("PluginDaemonBadRequestError", -400, 200, "plugin_unique_identifier is required"),
    DaemonErrorScenario("PluginDaemonNotFoundError", -404, 200, "plugin installation not found for this tenant"),
    DaemonErrorScenario("PluginUniqueIdentifierError", -400, 400, "plugin_unique_identifier is not valid"),
    DaemonErrorScenario("PluginNotFoundError", -404, 404, "plugin not found"),
    DaemonErrorScenario("PluginDaemonUnauthorizedError", -401, 401, "unauthorized"),
    DaemonErrorScenario("PluginPermissionDeniedError", -403, 200,
                        "permission denied, you need to enable endpoint access in plugin manifest"),
    DaemonErrorScenario("PluginInvokeError", -500, 200,
                        json.dumps({"args": {}, "error_type": "InvokeServerUnavailableError", "message": "503"},
                                   separators=(",", ":"))),
]


def daemon_error(server: FixtureDaemon, scenario: DaemonErrorScenario) -> None:
    """Every route answers ``scenario``'s envelope: as the whole body, or as one SSE line on stream routes."""
    body = error_body(scenario.code, scenario.error_type, scenario.message)

    def answer(request: RecordedRequest) -> Reply:
        if "/dispatch/" in request.path and scenario.http_status == 200:
            return Reply(stream=[b"data: " + body + b"\n\n"])
        return Reply(status=scenario.http_status, body=body)

    server.fallback = answer


# Every client call, by name, as the scenarios exercise them.
CLIENT_CALLS: list[tuple[str, Callable[[DifyPluginClient], Any]]] = [
    ("upload_pkg", lambda c: c.upload_pkg(TENANT, b"PK", False)),
    ("upload_bundle", lambda c: c.upload_bundle(TENANT, b"PK", False)),
    ("install_from_identifiers",
     lambda c: c.install_from_identifiers(TENANT, [IDENTIFIER], PluginInstallationSource.Package, [{}])),
    ("upgrade_plugin", lambda c: c.upgrade_plugin(TENANT, IDENTIFIER, IDENTIFIER_V2, "package", {})),
    ("fetch_plugin_installation_tasks", lambda c: c.fetch_plugin_installation_tasks(TENANT, 1, 10)),
    ("fetch_plugin_installation_task", lambda c: c.fetch_plugin_installation_task(TENANT, TASK_ID)),
    ("delete_plugin_installation_task", lambda c: c.delete_plugin_installation_task(TENANT, TASK_ID)),
    ("delete_all_plugin_installation_task_items", lambda c: c.delete_all_plugin_installation_task_items(TENANT)),
    ("delete_plugin_installation_task_item",
     lambda c: c.delete_plugin_installation_task_item(TENANT, TASK_ID, IDENTIFIER)),
    ("fetch_missing_dependencies", lambda c: c.fetch_missing_dependencies(TENANT, [IDENTIFIER_V2])),
    ("fetch_plugin_installation_by_ids", lambda c: c.fetch_plugin_installation_by_ids(TENANT, ["acme/searcher"])),
    ("uninstall", lambda c: c.uninstall(TENANT, "0192a3b4-0000-7000-8000-000000000000")),
    ("list_plugins", lambda c: c.list_plugins(TENANT)),
    ("list_plugins_with_total", lambda c: c.list_plugins_with_total(TENANT, 1, 10)),
    ("fetch_plugin_manifest", lambda c: c.fetch_plugin_manifest(TENANT, IDENTIFIER)),
    ("decode_plugin_from_identifier", lambda c: c.decode_plugin_from_identifier(TENANT, IDENTIFIER)),
    ("fetch_plugin_by_identifier", lambda c: c.fetch_plugin_by_identifier(TENANT, IDENTIFIER)),
    ("fetch_tool_providers", lambda c: c.fetch_tool_providers(TENANT)),
    ("fetch_tool_provider", lambda c: c.fetch_tool_provider(TENANT, "acme/searcher/search")),
    ("check_tools_existence", lambda c: c.check_tools_existence(TENANT, ["acme/searcher/search"])),
    ("invoke", lambda c: list(c.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {"query": "q"}))),
    ("validate_provider_credentials",
     lambda c: c.validate_provider_credentials(TENANT, "u", "acme/searcher/search", {})),
    ("get_runtime_parameters",
     lambda c: c.get_runtime_parameters(TENANT, "u", "acme/searcher/search", {}, "search")),
]
