"""Plugin logs (``GET /plugin/{tenant}/management/logs``) against the fixture daemon: the request both
clients send, the parsed response, argument checks, and the ``logs`` command's text and JSON output."""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
from typing import Any

import pytest

from daemon_payloads import TENANT
from dify_plugin_client import AsyncDifyPluginClient, DifyPluginClient, PluginConfig
from dify_plugin_client.cli import main
from dify_plugin_client.entities import PluginLogsResponse
from fixture_server import FixtureDaemon

LOGS = f"/plugin/{TENANT}/management/logs"
PLUGIN = "langgenius/searcher"


def logs_payload() -> dict[str, Any]:
    return {
        "plugin_id": PLUGIN,
        "plugin_unique_identifier": f"{PLUGIN}:0.0.1@" + "a" * 64,
        "entries": [
            {"seq": 41, "time": "2026-12-07T10:00:00Z", "source": "stderr", "level": "STDERR", "message": "booting"},
            {"seq": 42, "time": "2026-12-07T10:00:01Z", "source": "log", "level": "INFO", "message": "ready"},
            {"seq": 43, "time": "2026-12-07T10:00:02Z", "source": "daemon", "level": "WARNING",
             "message": "plugin process exited unexpectedly"},
        ],
        "last_seq": 43,
        "dropped": 40,
    }


def test_fetch_plugin_logs_sends_the_query_and_parses_entries(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", LOGS, logs_payload())
    logs = client.fetch_plugin_logs(TENANT, PLUGIN)
    assert isinstance(logs, PluginLogsResponse)
    assert (logs.plugin_id, logs.last_seq, logs.dropped) == (PLUGIN, 43, 40)
    assert [(e.seq, e.source, e.level, e.message) for e in logs.entries] == [
        (41, "stderr", "STDERR", "booting"),
        (42, "log", "INFO", "ready"),
        (43, "daemon", "WARNING", "plugin process exited unexpectedly"),
    ]
    assert daemon.requests_to(LOGS)[0].query == {"plugin_id": [PLUGIN]}

    client.fetch_plugin_logs(TENANT, PLUGIN, after=43, limit=5)
    assert daemon.requests_to(LOGS)[1].query == {"plugin_id": [PLUGIN], "after": ["43"], "limit": ["5"]}


def test_fetch_plugin_logs_rejects_bad_arguments_without_a_request(
    daemon: FixtureDaemon, client: DifyPluginClient
) -> None:
    with pytest.raises(ValueError, match="author/name"):
        client.fetch_plugin_logs(TENANT, "searcher")
    with pytest.raises(ValueError, match="after"):
        client.fetch_plugin_logs(TENANT, PLUGIN, after=-1)
    with pytest.raises(ValueError, match="limit"):
        client.fetch_plugin_logs(TENANT, PLUGIN, limit=0)
    with pytest.raises(ValueError):
        client.fetch_plugin_logs("bad/tenant", PLUGIN)
    assert daemon.requests_to(LOGS) == []


def test_async_fetch_plugin_logs_sends_the_same_request(daemon: FixtureDaemon) -> None:
    daemon.json("GET", LOGS, logs_payload())

    async def scenario() -> PluginLogsResponse:
        async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, timeout=5.0)) as client:
            return await client.fetch_plugin_logs(TENANT, PLUGIN, after=40, limit=3)

    logs = asyncio.run(scenario())
    assert [e.seq for e in logs.entries] == [41, 42, 43]
    assert daemon.requests_to(LOGS)[0].query == {"plugin_id": [PLUGIN], "after": ["40"], "limit": ["3"]}


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as home:
        code = main(argv, environ={"HOME": home}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_logs_command_prints_lines_like_the_rust_client(daemon: FixtureDaemon) -> None:
    daemon.json("GET", LOGS, logs_payload())
    code, out, err = _cli(["--url", daemon.url, "--tenant", TENANT, "logs", PLUGIN, "--tail", "3"])
    assert code == 0, err
    assert out == (
        "(40 older lines were dropped)\n"
        "2026-12-07T10:00:00Z [stderr] booting\n"
        "2026-12-07T10:00:01Z [log] INFO ready\n"
        "2026-12-07T10:00:02Z [daemon] WARNING plugin process exited unexpectedly\n"
    )
    assert daemon.requests_to(LOGS)[0].query == {"plugin_id": [PLUGIN], "limit": ["3"]}

    code, out, err = _cli(["--url", daemon.url, "--tenant", TENANT, "-o", "json", "logs", PLUGIN])
    assert code == 0, err
    assert json.loads(out) == logs_payload()
    assert daemon.requests_to(LOGS)[1].query == {"plugin_id": [PLUGIN], "limit": ["200"]}


def test_logs_command_usage_errors(daemon: FixtureDaemon) -> None:
    code, _, err = _cli(["--url", daemon.url, "--tenant", TENANT, "logs", PLUGIN, "--tail", "0"])
    assert code == 2 and "--tail" in err
    code, _, err = _cli(["--url", daemon.url, "logs", PLUGIN])
    assert code == 2 and "tenant" in err
    assert daemon.requests_to(LOGS) == []
