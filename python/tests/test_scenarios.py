"""Every client call under every named scenario: typed results when happy, the named exception otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import dify_plugin_client
from async_runner import AsyncClientRunner
from dify_plugin_client import (
    AsyncDifyPluginClient,
    DifyPluginClient,
    PluginConfig,
    PluginDaemonError,
    PluginDaemonInnerError,
    PluginDaemonUnauthorizedError,
    PluginInvokeError,
)
from daemon_payloads import IDENTIFIER, TENANT
from fixture_server import FixtureDaemon
from scenarios import (
    CLIENT_CALLS,
    DAEMON_ERROR_SCENARIOS,
    DaemonErrorScenario,
    daemon_error,
    happy,
    pagination,
    slow,
    unauthorized,
)

CALL_IDS = [name for name, _ in CLIENT_CALLS]


@pytest.fixture(params=["sync", "async"])
def any_client(request: pytest.FixtureRequest, daemon: FixtureDaemon) -> Iterator[Any]:
    """The sync client, or the async one behind ``AsyncClientRunner`` (same calls, same expectations)."""
    config = PluginConfig(url=daemon.url, key="plugin-api-key", timeout=5.0)
    if request.param == "sync":
        with DifyPluginClient(config) as client:
            yield client
    else:
        runner = AsyncClientRunner(AsyncDifyPluginClient(config))
        try:
            yield runner
        finally:
            runner.close()


@pytest.mark.parametrize("call", [c for _, c in CLIENT_CALLS], ids=CALL_IDS)
def test_happy_scenario(daemon: FixtureDaemon, any_client: Any, call: Callable[[DifyPluginClient], Any]) -> None:
    happy(daemon)
    result = call(any_client)
    assert result is not None
    values = result if isinstance(result, list) else [result]
    for value in values:
        assert isinstance(value, (BaseModel, bool)), f"untyped result {value!r}"
    assert all(r.headers["x-api-key"] == "plugin-api-key" for r in daemon.requests)


def test_happy_scenario_readme(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    happy(daemon)
    assert client.fetch_plugin_readme(TENANT, IDENTIFIER, "en_US") == "# Searcher"


@pytest.mark.parametrize("call", [c for _, c in CLIENT_CALLS], ids=CALL_IDS)
def test_unauthorized_scenario(daemon: FixtureDaemon, any_client: Any,
                               call: Callable[[DifyPluginClient], Any]) -> None:
    unauthorized(daemon)
    with pytest.raises(PluginDaemonUnauthorizedError) as caught:
        call(any_client)
    assert caught.value.code == -401 and caught.value.http_status == 401
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)


@pytest.mark.parametrize("scenario", DAEMON_ERROR_SCENARIOS, ids=[s.error_type for s in DAEMON_ERROR_SCENARIOS])
def test_daemon_error_scenario(daemon: FixtureDaemon, any_client: Any, scenario: DaemonErrorScenario) -> None:
    client = any_client
    daemon_error(daemon, scenario)
    expected: type[PluginDaemonError] = getattr(dify_plugin_client, scenario.error_type)
    for name, call in CLIENT_CALLS:
        with pytest.raises(expected) as caught:
            call(client)
        error = caught.value
        assert type(error) is expected, name
        assert (error.code, error.error_type, error.http_status) == (
            scenario.code, scenario.error_type, scenario.http_status), name
        if isinstance(error, PluginInvokeError):
            assert (error.inner_error_type, error.inner_message) == ("InvokeServerUnavailableError", "503"), name
        else:
            assert error.description == scenario.message, name
    # The readme call maps "no readme" (PluginDaemonNotFoundError) to "" and raises every other error.
    if scenario.error_type == "PluginDaemonNotFoundError":
        assert client.fetch_plugin_readme(TENANT, IDENTIFIER, "en_US") == ""
    else:
        with pytest.raises(expected):
            client.fetch_plugin_readme(TENANT, IDENTIFIER, "en_US")


def test_pagination_scenario(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    pagination(daemon, total=5)
    pages = [client.list_plugins_with_total(TENANT, page, 2) for page in (1, 2, 3, 4)]
    assert [len(p.list) for p in pages] == [2, 2, 1, 0]
    assert {p.total for p in pages} == {5}
    ids = [plugin.installation_id for p in pages for plugin in p.list]
    assert len(set(ids)) == 5
    tasks = [client.fetch_plugin_installation_tasks(TENANT, page, 3) for page in (1, 2, 3)]
    assert [[t.id for t in page] for page in tasks] == [["task-0", "task-1", "task-2"], ["task-3", "task-4"], []]


@pytest.mark.parametrize("call", [c for n, c in CLIENT_CALLS if n in ("list_plugins", "upload_pkg", "invoke")],
                         ids=["list_plugins", "upload_pkg", "invoke"])
def test_slow_scenario(daemon: FixtureDaemon, call: Callable[[DifyPluginClient], Any]) -> None:
    slow(daemon, delay=1.0)
    with DifyPluginClient(PluginConfig(url=daemon.url, timeout=0.25)) as impatient:
        started = time.monotonic()
        with pytest.raises(PluginDaemonInnerError) as caught:
            call(impatient)
        assert time.monotonic() - started < 0.95
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    with DifyPluginClient(PluginConfig(url=daemon.url, timeout=5)) as patient:
        assert call(patient) is not None
