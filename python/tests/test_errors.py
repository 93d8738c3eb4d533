"""Error mapping: every daemon error type, as the daemon encodes it, raises its named exception."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

import dify_plugin_client
from dify_plugin_client import (
    DifyPluginClient,
    PluginConfig,
    PluginDaemonBadRequestError,
    PluginDaemonError,
    PluginDaemonInnerError,
    PluginDaemonInternalServerError,
    PluginDaemonNotFoundError,
    PluginDaemonResponseError,
    PluginDaemonUnauthorizedError,
    PluginDaemonUnknownError,
    PluginInvokeError,
    PluginNotFoundBadRequestError,
    PluginNotFoundError,
    PluginPermissionDeniedError,
    PluginUniqueIdentifierError,
)
from daemon_payloads import IDENTIFIER, TENANT
from fixture_server import UNAUTHORIZED_BODY, FixtureDaemon, Reply, error_body

MANIFEST = f"/plugin/{TENANT}/management/fetch/manifest"

# Byte-exact envelopes from docs/http.md §1.1 and §2.2.
SPEC_UNAUTHORIZED = (
    rb'{"code":-401,"message":"{\"message\":\"unauthorized\",\"error_type\":\"PluginDaemonUnauthorizedError\",'
    rb'\"args\":null}","data":null}'
)
SPEC_PLUGIN_NOT_FOUND = (
    rb'{"code":-404,"message":"{\"message\":\"plugin not found\",\"error_type\":\"PluginNotFoundError\",'
    rb'\"args\":null}","data":null}'
)


def test_fixture_envelopes_are_byte_exact_with_the_spec() -> None:
    assert UNAUTHORIZED_BODY == SPEC_UNAUTHORIZED
    assert error_body(-404, "PluginNotFoundError", "plugin not found") == SPEC_PLUGIN_NOT_FOUND


# One scenario per daemon error type: (error_type, code, HTTP status the daemon uses, message, exception).
DAEMON_ERRORS = [
    ("PluginDaemonInternalServerError", -500, 200, "record not found", PluginDaemonInternalServerError),
    ("PluginDaemonBadRequestError", -400, 200, "plugin_unique_identifier is required", PluginDaemonBadRequestError),
    ("PluginDaemonNotFoundError", -404, 200, "no readme content available for this plugin", PluginDaemonNotFoundError),
    ("PluginUniqueIdentifierError", -400, 400, "invalid plugin unique identifier", PluginUniqueIdentifierError),
    ("PluginNotFoundError", -404, 404, "plugin not found", PluginNotFoundError),
    ("PluginDaemonUnauthorizedError", -401, 401, "unauthorized", PluginDaemonUnauthorizedError),
    (
        "PluginPermissionDeniedError",
        -403,
        200,
        "permission denied, you need to enable endpoint access in plugin manifest",
        PluginPermissionDeniedError,
    ),
    ("PluginDaemonInternalServerError", -500, 500, "failed to get plugin runtime", PluginDaemonInternalServerError),
]


@pytest.mark.parametrize(("error_type", "code", "status", "message", "exception"), DAEMON_ERRORS)
def test_management_error_envelope_raises_named_exception(
    daemon: FixtureDaemon,
    client: DifyPluginClient,
    error_type: str,
    code: int,
    status: int,
    message: str,
    exception: type[PluginDaemonError],
) -> None:
    daemon.error("GET", MANIFEST, code, error_type, message, status=status)
    with pytest.raises(exception) as caught:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    error = caught.value
    assert type(error) is exception
    assert error.code == code
    assert error.error_type == error_type
    assert error.description == message
    assert error.error_args is None
    assert error.http_status == status
    assert isinstance(error, PluginDaemonError)


@pytest.mark.parametrize(("error_type", "code", "status", "message", "exception"), DAEMON_ERRORS)
def test_stream_error_envelope_raises_named_exception(
    daemon: FixtureDaemon,
    client: DifyPluginClient,
    error_type: str,
    code: int,
    status: int,
    message: str,
    exception: type[PluginDaemonError],
) -> None:
    """Dispatch routes: the error is either the whole (non-200) body or one SSE line."""
    path = f"/plugin/{TENANT}/dispatch/tool/invoke"
    body = error_body(code, error_type, message)
    if status == 200:
        daemon.sse("POST", path, [b"data: " + body + b"\n\n"])
    else:
        daemon.on("POST", path, Reply(status=status, body=body))
    messages = client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {"q": 1}, validate_parameters=False)
    with pytest.raises(exception) as caught:
        list(messages)
    assert caught.value.code == code
    assert caught.value.description == message


def test_every_named_exception_is_importable_from_the_package() -> None:
    for name in (
        "PluginDaemonInnerError",
        "PluginInvokeError",
        "PluginDaemonBadRequestError",
        "PluginDaemonNotFoundError",
        "PluginUniqueIdentifierError",
        "PluginPermissionDeniedError",
        "PluginDaemonUnauthorizedError",
        "PluginDaemonInternalServerError",
        "PluginNotFoundError",
    ):
        assert issubclass(getattr(dify_plugin_client, name), Exception)


def test_unauthorized_scenario_wrong_key_gets_401_envelope(daemon: FixtureDaemon) -> None:
    daemon.json("GET", f"/plugin/{TENANT}/management/list", {"list": [], "total": 0})
    with DifyPluginClient(PluginConfig(url=daemon.url, key="wrong-key", timeout=5)) as bad:
        with pytest.raises(PluginDaemonUnauthorizedError) as caught:
            bad.list_plugins(TENANT)
    assert caught.value.http_status == 401
    assert caught.value.code == -401
    # The HTTP failure is kept as the cause.
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)
    assert caught.value.__cause__.response.status_code == 401
    assert daemon.requests[-1].headers["x-api-key"] == "wrong-key"


def test_plugin_invoke_error_in_json_response_parses_inner_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    inner = json.dumps({"args": {}, "error_type": "InvokeRateLimitError", "message": "429 too many"},
                       separators=(",", ":"))
    daemon.error("GET", MANIFEST, -500, "PluginInvokeError", inner)
    with pytest.raises(PluginInvokeError) as caught:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert caught.value.inner_error_type == "InvokeRateLimitError"
    assert caught.value.get_error_type() == "InvokeRateLimitError"
    assert caught.value.inner_message == "429 too many"
    assert caught.value.get_error_message() == "429 too many"
    assert caught.value.inner_args == {}
    assert "InvokeRateLimitError" in str(caught.value)


def test_plugin_invoke_error_with_non_json_inner_message(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.error("GET", MANIFEST, -500, "PluginInvokeError", "runtime crashed")
    with pytest.raises(PluginInvokeError) as caught:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert caught.value.inner_error_type == "unknown"
    assert caught.value.inner_message == "runtime crashed"


def test_unknown_error_type_raises_generic_daemon_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.error("GET", MANIFEST, -500, "ConnectionClosedError", "connection closed")
    with pytest.raises(PluginDaemonUnknownError) as caught:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert caught.value.error_type == "ConnectionClosedError"
    assert caught.value.description == "connection closed"


def test_error_message_that_is_not_json_raises_inner_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.on("GET", MANIFEST, Reply(body=b'{"code":-500,"message":"boom","data":null}'))
    with pytest.raises(PluginDaemonInnerError) as caught:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert caught.value.code == -500
    assert caught.value.message == "boom"
    assert not isinstance(caught.value, PluginDaemonResponseError)


def test_success_with_null_data_raises_inner_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.on("GET", MANIFEST, Reply(body=b'{"code":0,"message":"success","data":null}'))
    with pytest.raises(PluginDaemonResponseError, match="empty data"):
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)


def test_payload_that_does_not_fit_the_model_raises_inner_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", MANIFEST, {"name": "no version here"})
    with pytest.raises(PluginDaemonResponseError, match="unexpected payload"):
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)


def test_non_envelope_success_body_raises_inner_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.on("GET", MANIFEST, Reply(body=b"<html>proxy</html>", content_type="text/html"))
    with pytest.raises(PluginDaemonResponseError, match="not a plugin daemon envelope"):
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)


def test_unknown_route_raises_http_status_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    # No route registered: the daemon's NoRoute answer has a string code, so it is an HTTP failure.
    with pytest.raises(httpx.HTTPStatusError) as caught:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert caught.value.response.status_code == 404


def test_bare_500_without_body_raises_http_status_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.on("GET", MANIFEST, Reply(status=500, body=b""))
    with pytest.raises(httpx.HTTPStatusError) as caught:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert caught.value.response.status_code == 500


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_raises_inner_error_with_httpx_cause() -> None:
    with DifyPluginClient(PluginConfig(url=f"http://127.0.0.1:{_closed_port()}", timeout=2)) as c:
        with pytest.raises(PluginDaemonInnerError) as caught:
            c.list_plugins(TENANT)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.code == -500


def test_uninstall_of_unknown_installation_raises_plugin_not_found(
    daemon: FixtureDaemon, client: DifyPluginClient
) -> None:
    """Upstream answers an installation id the tenant does not have with HTTP 200 and Error(-404,
    PluginNotFoundError, "plugin not found"); the client raises it instead of returning a boolean."""
    route = f"/plugin/{TENANT}/management/uninstall"
    daemon.error("POST", route, -404, "PluginNotFoundError", "plugin not found", status=200)
    for call in (
        lambda: client.uninstall(TENANT, plugin_installation_id="abc123"),
        lambda: client.uninstall(TENANT, installation_id="abc123"),
        lambda: client.uninstall(TENANT, "abc123"),
    ):
        with pytest.raises(PluginNotFoundError) as caught:
            call()
        assert (caught.value.code, caught.value.error_type, caught.value.description, caught.value.http_status) == (
            -404, "PluginNotFoundError", "plugin not found", 200)
    assert [r.json() for r in daemon.requests_to(route)] == [{"plugin_installation_id": "abc123"}] * 3


def test_manifest_of_unknown_plugin_is_bad_request_and_plugin_not_found(
    daemon: FixtureDaemon, client: DifyPluginClient
) -> None:
    """``fetch/manifest`` of an unknown package: Error(-400, PluginDaemonBadRequestError, "plugin not found").
    Dify's client raises that error type as is; ours does too, as a class that is also a PluginNotFoundError."""
    daemon.error("GET", MANIFEST, -400, "PluginDaemonBadRequestError", "plugin not found", status=200)
    with pytest.raises(PluginDaemonBadRequestError) as as_dify:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    with pytest.raises(PluginNotFoundError) as as_not_found:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    for caught in (as_dify, as_not_found):
        error = caught.value
        assert type(error) is PluginNotFoundBadRequestError
        assert (error.code, error.error_type, error.description) == (-400, "PluginDaemonBadRequestError",
                                                                      "plugin not found")
    # Other bad requests stay plain PluginDaemonBadRequestError.
    daemon.error("GET", MANIFEST, -400, "PluginDaemonBadRequestError", "invalid plugin_unique_identifier")
    with pytest.raises(PluginDaemonBadRequestError) as other:
        client.fetch_plugin_manifest(TENANT, IDENTIFIER)
    assert type(other.value) is PluginDaemonBadRequestError and not isinstance(other.value, PluginNotFoundError)


def test_either_parameter_name_but_not_both(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    m = f"/plugin/{TENANT}/management"
    daemon.json("POST", f"{m}/install/upgrade", {"all_installed": False, "task_id": "t"})
    daemon.json("POST", f"{m}/installation/missing", [])
    new = IDENTIFIER.replace("0.0.1", "0.0.2")
    client.upgrade_plugin(TENANT, original_plugin_unique_identifier=IDENTIFIER, new_plugin_unique_identifier=new,
                          source="package", meta={})
    client.upgrade_plugin(TENANT, original=IDENTIFIER, new=new, source="package", meta={})
    client.upgrade_plugin(TENANT, IDENTIFIER, new, "package", {})
    bodies = [r.json() for r in daemon.requests_to(f"{m}/install/upgrade")]
    assert bodies == [{"original_plugin_unique_identifier": IDENTIFIER, "new_plugin_unique_identifier": new,
                       "source": "package", "meta": {}}] * 3
    assert client.fetch_missing_dependencies(TENANT, plugin_unique_identifiers=[IDENTIFIER]) == []
    assert client.fetch_missing_dependencies(TENANT, identifiers=[IDENTIFIER]) == []
    assert [r.json() for r in daemon.requests_to(f"{m}/installation/missing")] == [
        {"plugin_unique_identifiers": [IDENTIFIER]}] * 2
    with pytest.raises(TypeError, match="both"):
        client.uninstall(TENANT, plugin_installation_id="a", installation_id="a")
    with pytest.raises(TypeError, match="missing required argument: 'plugin_installation_id'"):
        client.uninstall(TENANT)
    with pytest.raises(TypeError, match="'source'"):
        client.upgrade_plugin(TENANT, IDENTIFIER, new)
    with pytest.raises(TypeError, match="both"):
        client.fetch_missing_dependencies(TENANT, [IDENTIFIER], identifiers=[IDENTIFIER])
    assert len(daemon.requests_to(f"{m}/uninstall")) == 0
