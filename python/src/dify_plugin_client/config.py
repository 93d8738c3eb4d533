"""Connection settings of a ``DifyPluginClient``.

Owns: ``PluginConfig`` (daemon URL, API key, timeout) and its defaults, which match Dify's own
``PLUGIN_DAEMON_URL`` / ``PLUGIN_DAEMON_KEY`` / ``PLUGIN_DAEMON_TIMEOUT`` defaults.
Must not: read environment variables or files (the CLI layers those on top) or open connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

DEFAULT_URL = "http://localhost:5002"
DEFAULT_KEY = "plugin-api-key"
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class PluginConfig:
    """Where the daemon is and how to talk to it.

    ``timeout`` is either a number of seconds (applied to connect, read, write and pool) or a full
    ``httpx.Timeout``. A streaming invocation applies the read timeout between chunks, not to the whole stream.
    """

    url: str = DEFAULT_URL
    key: str = DEFAULT_KEY
    timeout: float | httpx.Timeout = field(default=DEFAULT_TIMEOUT)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"PluginConfig.url must be an http(s) URL, got {self.url!r}")
        if not isinstance(self.key, str):
            raise ValueError("PluginConfig.key must be a string")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float, httpx.Timeout)):
            raise ValueError(f"PluginConfig.timeout must be a number or httpx.Timeout, got {self.timeout!r}")
        if isinstance(self.timeout, (int, float)) and self.timeout <= 0:
            raise ValueError(f"PluginConfig.timeout must be positive, got {self.timeout!r}")

    @property
    def base_url(self) -> str:
        """The URL without a trailing slash."""
        return self.url.rstrip("/")

    def httpx_timeout(self) -> httpx.Timeout:
        """The timeout as an ``httpx.Timeout``."""
        if isinstance(self.timeout, httpx.Timeout):
            return self.timeout
        return httpx.Timeout(float(self.timeout))
