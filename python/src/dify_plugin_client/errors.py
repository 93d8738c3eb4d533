"""Exceptions raised by the client and the mapping from daemon error envelopes to them.

Owns: the exception hierarchy and ``error_from_envelope``, which turns a daemon envelope
``{"code": <negative int>, "message": "<json error object>", "data": null}`` into the matching exception.
Must not: perform I/O or know about HTTP transports; callers hand it already-decoded JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class PluginDaemonError(Exception):
    """Base class of every error reported by the plugin daemon (or about its responses).

    Attributes:
        code: the envelope ``code`` (negative), or ``-500`` for client-side failures.
        error_type: the daemon's ``error_type`` string (e.g. ``PluginNotFoundError``).
        description: the human-readable message from the daemon's error object.
        error_args: the ``args`` of the daemon's error object (usually ``None``).
        http_status: the HTTP status of the response that carried the error, when known.
    """

    default_error_type = "PluginDaemonError"

    def __init__(
        self,
        description: str,
        *,
        code: int = -500,
        error_type: str | None = None,
        error_args: Any = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.code = code
        self.error_type = error_type or self.default_error_type
        self.error_args = error_args
        self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.error_type}: {self.description} (code {self.code})"


class PluginDaemonInnerError(PluginDaemonError):
    """The daemon could not be reached, or it answered something that is not a valid envelope.

    Raised for connection failures and timeouts (the original ``httpx`` exception is the ``__cause__``),
    for error envelopes whose ``message`` is not a JSON error object, and for malformed success payloads.
    """

    default_error_type = "PluginDaemonInnerError"

    def __init__(self, code: int, message: str, **kwargs: Any) -> None:
        super().__init__(message, code=code, **kwargs)
        self.message = message


class PluginDaemonResponseError(PluginDaemonInnerError):
    """The daemon answered something this client cannot read: not an envelope, ``data: null`` on success,
    or a payload that does not fit the expected model (usually a daemon speaking another API version)."""

    default_error_type = "PluginDaemonResponseError"


class PluginDaemonInternalServerError(PluginDaemonError):
    """``PluginDaemonInternalServerError`` (-500): a generic failure inside the daemon."""

    default_error_type = "PluginDaemonInternalServerError"


class PluginDaemonBadRequestError(PluginDaemonError):
    """``PluginDaemonBadRequestError`` (-400): the request was rejected as invalid."""

    default_error_type = "PluginDaemonBadRequestError"


class PluginDaemonNotFoundError(PluginDaemonError):
    """``PluginDaemonNotFoundError`` (-404): a readme, installation or endpoint does not exist."""

    default_error_type = "PluginDaemonNotFoundError"


class PluginUniqueIdentifierError(PluginDaemonError):
    """``PluginUniqueIdentifierError`` (-400): a plugin unique identifier failed validation."""

    default_error_type = "PluginUniqueIdentifierError"


class PluginNotFoundError(PluginDaemonError):
    """``PluginNotFoundError`` (-404): the plugin (or provider) is not installed for the tenant."""

    default_error_type = "PluginNotFoundError"


class PluginDaemonUnauthorizedError(PluginDaemonError):
    """``PluginDaemonUnauthorizedError`` (-401): the API key was missing or rejected."""

    default_error_type = "PluginDaemonUnauthorizedError"


class PluginPermissionDeniedError(PluginDaemonError):
    """``PluginPermissionDeniedError`` (-403): the plugin's manifest does not grant the permission."""

    default_error_type = "PluginPermissionDeniedError"


class PluginInvokeError(PluginDaemonError):
    """``PluginInvokeError`` (-500): the plugin itself failed while handling an invocation.

    The daemon nests the plugin's own error object as a JSON string in ``description``; it is parsed into
    ``inner_error_type``, ``inner_message`` and ``inner_args`` (``"unknown"`` / the raw text when the inner
    payload is not a JSON object).
    """

    default_error_type = "PluginInvokeError"

    def __init__(self, description: str, **kwargs: Any) -> None:
        super().__init__(description, **kwargs)
        inner = _parse_json_object(description)
        if inner is None:
            self.inner_error_type = "unknown"
            self.inner_message = description
            self.inner_args: Any = None
        else:
            self.inner_error_type = str(inner.get("error_type", "unknown"))
            self.inner_message = str(inner.get("message", ""))
            self.inner_args = inner.get("args")

    def get_error_type(self) -> str:
        """The plugin's own error type, e.g. ``InvokeRateLimitError``."""
        return self.inner_error_type

    def get_error_message(self) -> str:
        """The plugin's own error message."""
        return self.inner_message

    def __str__(self) -> str:
        return f"PluginInvokeError: {self.inner_error_type}: {self.inner_message}"


class PluginNotFoundBadRequestError(PluginDaemonBadRequestError, PluginNotFoundError):
    """``PluginDaemonBadRequestError`` with the message ``plugin not found`` (e.g. ``fetch_plugin_manifest`` of a
    package the daemon does not know).

    Dify's client raises the daemon's ``error_type`` as is, so this is a ``PluginDaemonBadRequestError`` (code,
    ``error_type`` and handlers written for Dify stay the same); it is also a ``PluginNotFoundError``, so
    ``except PluginNotFoundError`` catches every way the daemon reports a plugin it does not know.
    """

    default_error_type = "PluginDaemonBadRequestError"


PLUGIN_NOT_FOUND_MESSAGE = "plugin not found"


class PluginDaemonUnknownError(PluginDaemonError):
    """An error envelope carried an ``error_type`` this client does not know."""

    default_error_type = "unknown"


class ToolParameterValidationError(ValueError):
    """Tool parameters do not match the tool's declaration; raised before any invoke request is sent."""

    def __init__(self, tool: str, problems: list[str]) -> None:
        self.tool = tool
        self.problems = problems
        super().__init__(f"invalid parameters for tool {tool!r}: " + "; ".join(problems))


ERROR_TYPES: dict[str, type[PluginDaemonError]] = {
    cls.default_error_type: cls
    for cls in (
        PluginDaemonInnerError,
        PluginDaemonInternalServerError,
        PluginDaemonBadRequestError,
        PluginDaemonNotFoundError,
        PluginUniqueIdentifierError,
        PluginNotFoundError,
        PluginDaemonUnauthorizedError,
        PluginPermissionDeniedError,
        PluginInvokeError,
    )
}


def _parse_json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def error_from_envelope(envelope: Mapping[str, Any], http_status: int | None = None) -> PluginDaemonError:
    """Build the exception for an error envelope (``code != 0``).

    The envelope's ``message`` must be a JSON object ``{message, error_type, args}``; anything else yields a
    ``PluginDaemonInnerError`` carrying the raw message text.
    """
    raw_code = envelope.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else -500
    raw_message = envelope.get("message")
    message_text = raw_message if isinstance(raw_message, str) else json.dumps(raw_message)
    error_object = _parse_json_object(message_text)
    if error_object is None or not isinstance(error_object.get("error_type"), str):
        return PluginDaemonInnerError(code, message_text, http_status=http_status)
    error_type: str = error_object["error_type"]
    inner = error_object.get("message", "")
    description = inner if isinstance(inner, str) else json.dumps(inner)
    args = error_object.get("args")
    cls = ERROR_TYPES.get(error_type, PluginDaemonUnknownError)
    if cls is PluginDaemonBadRequestError and description == PLUGIN_NOT_FOUND_MESSAGE:
        cls = PluginNotFoundBadRequestError
    if cls is PluginDaemonInnerError:
        return PluginDaemonInnerError(code, description, error_args=args, http_status=http_status)
    return cls(description, code=code, error_type=error_type, error_args=args, http_status=http_status)
