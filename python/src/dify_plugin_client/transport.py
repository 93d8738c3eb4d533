"""HTTP plumbing shared by every client method: requests, envelope decoding and SSE line parsing.

Owns: ``DaemonTransport``; the rules that turn a response into a payload or an exception:
- a body that is a daemon error envelope (integer ``code != 0``) raises the named exception from
  ``dify_plugin_client.errors``, whatever the HTTP status (the daemon sends -401 with HTTP 401, dispatch
  errors with 400/404/500, management errors with 200);
- any other non-2xx response raises ``httpx.HTTPStatusError``;
- connection failures and timeouts raise ``PluginDaemonInnerError`` (the httpx exception is the cause);
- a body that is not an envelope, a success envelope with ``data: null`` or a payload that does not fit
  the expected model raises ``PluginDaemonResponseError`` (a ``PluginDaemonInnerError``).
Must not: know individual routes (see ``client``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from .config import PluginConfig
from .errors import PluginDaemonInnerError, PluginDaemonResponseError, error_from_envelope

T = TypeVar("T")

Transformer = Callable[[Any], Any]

_MAX_SNIPPET = 300


def _snippet(text: str) -> str:
    return text if len(text) <= _MAX_SNIPPET else text[:_MAX_SNIPPET] + "..."


def _is_error_envelope(body: Any) -> bool:
    if not isinstance(body, dict) or "code" not in body:
        return False
    code = body["code"]
    return isinstance(code, int) and not isinstance(code, bool) and code != 0


def _is_success_envelope(body: Any) -> bool:
    return isinstance(body, dict) and body.get("code") == 0 and not isinstance(body.get("code"), bool)


class DaemonTransport:
    """Sends requests to the daemon with the API key and decodes envelopes into typed payloads."""

    def __init__(self, config: PluginConfig, http_client: httpx.Client | None = None) -> None:
        self.config = config
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=config.httpx_timeout())

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    def _url(self, path: str) -> str:
        return f"{self.config.base_url}/{path.lstrip('/')}"

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"X-Api-Key": self.config.key}
        if extra:
            headers.update(extra)
        return headers

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one non-streaming request; connection problems become ``PluginDaemonInnerError``."""
        headers = self._headers(kwargs.pop("headers", None))
        try:
            return self._http.request(method, self._url(path), headers=headers, **kwargs)
        except httpx.RequestError as exc:
            raise PluginDaemonInnerError(
                -500, f"request to plugin daemon failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def raise_for_error(response: httpx.Response, body: Any) -> None:
        """Raise the named exception for an error envelope, or ``HTTPStatusError`` for other non-2xx.

        When the envelope came with a non-2xx status, the named exception's ``__cause__`` is the
        ``httpx.HTTPStatusError`` for that status.
        """
        if _is_error_envelope(body):
            error = error_from_envelope(body, response.status_code)
            if not response.is_success:
                try:
                    response.raise_for_status()
                except httpx.HTTPStatusError as status_error:
                    raise error from status_error
            raise error
        response.raise_for_status()

    def request_payload(
        self,
        method: str,
        path: str,
        payload_type: type[T],
        *,
        transformer: Transformer | None = None,
        **kwargs: Any,
    ) -> T:
        """Send a request and return the envelope's ``data`` validated as ``payload_type``."""
        response = self.send(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        self.raise_for_error(response, body)
        if not _is_success_envelope(body):
            raise PluginDaemonResponseError(
                -500,
                f"response is not a plugin daemon envelope (HTTP {response.status_code}): {_snippet(response.text)}",
                http_status=response.status_code,
            )
        data = body.get("data")
        if data is None:
            raise PluginDaemonResponseError(-500, f"got empty data from plugin daemon for {method} {path}")
        if transformer is not None:
            data = transformer(data)
        return _validate(payload_type, data, f"{method} {path}")

    def stream_payloads(
        self,
        method: str,
        path: str,
        payload_type: type[T],
        **kwargs: Any,
    ) -> Iterator[T]:
        """Send a request whose answer is an SSE stream of envelopes; yield each ``data`` validated.

        An error envelope anywhere in the stream (or as the whole non-200 body) raises its named exception.
        """
        headers = self._headers(kwargs.pop("headers", None))
        adapter = TypeAdapter(payload_type)
        try:
            with self._http.stream(method, self._url(path), headers=headers, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    self.raise_for_error(response, body)
                for raw_line in response.iter_lines():
                    line = raw_line.strip()
                    if not line:
                        continue
                    if line.startswith("data:"):
                        line = line[len("data:") :].strip()
                    try:
                        item = json.loads(line)
                    except ValueError:
                        raise PluginDaemonResponseError(
                            -500, f"stream line is not JSON: {_snippet(line)}", http_status=response.status_code
                        ) from None
                    if _is_error_envelope(item):
                        raise error_from_envelope(item, response.status_code)
                    if not _is_success_envelope(item):
                        raise PluginDaemonResponseError(
                            -500,
                            f"stream line is not a plugin daemon envelope: {_snippet(line)}",
                            http_status=response.status_code,
                        )
                    try:
                        yield adapter.validate_python(item.get("data"))
                    except ValidationError as exc:
                        raise PluginDaemonResponseError(
                            -500, f"unexpected chunk in stream {method} {path}: {exc}"
                        ) from exc
        except httpx.RequestError as exc:
            raise PluginDaemonInnerError(
                -500, f"request to plugin daemon failed: {type(exc).__name__}: {exc}"
            ) from exc


def _validate(payload_type: type[T], data: Any, what: str) -> T:
    try:
        return TypeAdapter(payload_type).validate_python(data)
    except ValidationError as exc:
        raise PluginDaemonResponseError(-500, f"unexpected payload from {what}: {exc}") from exc


__all__ = ["DaemonTransport"]
