"""HTTP plumbing shared by every client method: requests, envelope decoding and SSE line parsing.

Owns: ``DaemonTransport`` (sync) and ``AsyncDaemonTransport`` (``httpx.AsyncClient``), the request
descriptions they execute (``Call``, ``StreamCall``), and the rules that turn a response into a payload or an exception:
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
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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


@dataclass(frozen=True)
class Call(Generic[T]):
    """One non-streaming daemon request and how to read its answer (``data`` validated as ``payload_type``)."""

    method: str
    path: str
    payload_type: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    transformer: Transformer | None = None

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class StreamCall(Generic[T]):
    """One daemon request answered by an SSE stream of envelopes; each ``data`` is read by ``parse``."""

    method: str
    path: str
    parse: Callable[[Any], T]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


def _request_failed(exc: httpx.RequestError) -> PluginDaemonInnerError:
    return PluginDaemonInnerError(-500, f"request to plugin daemon failed: {type(exc).__name__}: {exc}")


def _response_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


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


def read_payload(call: Call[T], response: httpx.Response) -> T:
    """The envelope's ``data`` of a fully read response, validated for ``call`` (or the mapped exception)."""
    body = _response_json(response)
    raise_for_error(response, body)
    if not _is_success_envelope(body):
        raise PluginDaemonResponseError(
            -500,
            f"response is not a plugin daemon envelope (HTTP {response.status_code}): {_snippet(response.text)}",
            http_status=response.status_code,
        )
    data = body.get("data")
    if data is None:
        raise PluginDaemonResponseError(-500, f"got empty data from plugin daemon for {call.what}")
    if call.transformer is not None:
        data = call.transformer(data)
    result: T = _validate(call.payload_type, data, call.what)
    return result


def read_stream_line(call: StreamCall[T], raw_line: str, status: int) -> T | None:
    """One SSE line of a stream: ``None`` for blank lines, the parsed chunk, or the mapped exception."""
    line = raw_line.strip()
    if not line:
        return None
    if line.startswith("data:"):
        line = line[len("data:") :].strip()
    try:
        item = json.loads(line)
    except ValueError:
        raise PluginDaemonResponseError(
            -500, f"stream line is not JSON: {_snippet(line)}", http_status=status
        ) from None
    if _is_error_envelope(item):
        raise error_from_envelope(item, status)
    if not _is_success_envelope(item):
        raise PluginDaemonResponseError(
            -500, f"stream line is not a plugin daemon envelope: {_snippet(line)}", http_status=status
        )
    try:
        return call.parse(item.get("data"))
    except ValidationError as exc:
        raise PluginDaemonResponseError(-500, f"unexpected chunk in stream {call.what}: {exc}") from exc


class _TransportBase:
    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    def _url(self, path: str) -> str:
        return f"{self.config.base_url}/{path.lstrip('/')}"

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"X-Api-Key": self.config.key}
        if extra:
            headers.update(extra)
        return headers


class DaemonTransport(_TransportBase):
    """Sends requests to the daemon (``httpx.Client``) with the API key and decodes envelopes."""

    def __init__(self, config: PluginConfig, http_client: httpx.Client | None = None) -> None:
        super().__init__(config)
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=config.httpx_timeout())

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one non-streaming request; connection problems become ``PluginDaemonInnerError``."""
        headers = self._headers(kwargs.pop("headers", None))
        try:
            return self._http.request(method, self._url(path), headers=headers, **kwargs)
        except httpx.RequestError as exc:
            raise _request_failed(exc) from exc

    raise_for_error = staticmethod(raise_for_error)

    def call(self, call: Call[T]) -> T:
        """Send ``call`` and return its validated payload."""
        return read_payload(call, self.send(call.method, call.path, **call.kwargs))

    def request_payload(
        self, method: str, path: str, payload_type: type[T], *, transformer: Transformer | None = None, **kwargs: Any
    ) -> T:
        """Send a request and return the envelope's ``data`` validated as ``payload_type``."""
        return self.call(Call[T](method, path, payload_type, kwargs, transformer))

    def stream(self, call: StreamCall[T]) -> Iterator[T]:
        """Yield each chunk of an SSE stream; an error envelope anywhere raises its named exception."""
        headers = self._headers(call.kwargs.get("headers"))
        kwargs = {k: v for k, v in call.kwargs.items() if k != "headers"}
        try:
            with self._http.stream(call.method, self._url(call.path), headers=headers, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    raise_for_error(response, _response_json(response))
                for raw_line in response.iter_lines():
                    item = read_stream_line(call, raw_line, response.status_code)
                    if item is not None:
                        yield item
        except httpx.RequestError as exc:
            raise _request_failed(exc) from exc

    def stream_payloads(self, method: str, path: str, payload_type: type[T], **kwargs: Any) -> Iterator[T]:
        """Send a request whose answer is an SSE stream of envelopes; yield each ``data`` validated."""
        adapter: TypeAdapter[T] = TypeAdapter(payload_type)
        return self.stream(StreamCall(method, path, adapter.validate_python, kwargs))


class AsyncDaemonTransport(_TransportBase):
    """The same as ``DaemonTransport`` on ``httpx.AsyncClient``."""

    def __init__(self, config: PluginConfig, http_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config)
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=config.httpx_timeout())

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self._headers(kwargs.pop("headers", None))
        try:
            return await self._http.request(method, self._url(path), headers=headers, **kwargs)
        except httpx.RequestError as exc:
            raise _request_failed(exc) from exc

    async def call(self, call: Call[T]) -> T:
        return read_payload(call, await self.send(call.method, call.path, **call.kwargs))

    async def stream(self, call: StreamCall[T]) -> AsyncGenerator[T, None]:
        headers = self._headers(call.kwargs.get("headers"))
        kwargs = {k: v for k, v in call.kwargs.items() if k != "headers"}
        try:
            async with self._http.stream(call.method, self._url(call.path), headers=headers, **kwargs) as response:
                if not response.is_success:
                    await response.aread()
                    raise_for_error(response, _response_json(response))
                async for raw_line in response.aiter_lines():
                    item = read_stream_line(call, raw_line, response.status_code)
                    if item is not None:
                        yield item
        except httpx.RequestError as exc:
            raise _request_failed(exc) from exc


def _validate(payload_type: Any, data: Any, what: str) -> Any:
    try:
        return TypeAdapter(payload_type).validate_python(data)
    except ValidationError as exc:
        raise PluginDaemonResponseError(-500, f"unexpected payload from {what}: {exc}") from exc


__all__ = ["AsyncDaemonTransport", "Call", "DaemonTransport", "StreamCall", "raise_for_error", "read_payload"]
