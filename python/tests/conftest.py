"""Shared fixtures: a fixture daemon on a free port and a client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dify_plugin_client import DifyPluginClient, PluginConfig
from fixture_server import FixtureDaemon


@pytest.fixture
def daemon() -> Iterator[FixtureDaemon]:
    server = FixtureDaemon().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(daemon: FixtureDaemon) -> Iterator[DifyPluginClient]:
    with DifyPluginClient(PluginConfig(url=daemon.url, key="plugin-api-key", timeout=5.0)) as c:
        yield c
