"""Tool invocation: SSE parsing, mid-stream errors, blob chunk merging and parameter casting."""

from __future__ import annotations

import base64
import json

import pytest

from dify_plugin_client import (
    DifyPluginClient,
    PluginDaemonInnerError,
    PluginDaemonInternalServerError,
    PluginInvokeError,
    PluginNotFoundError,
    ToolParameterValidationError,
)
from dify_plugin_client.entities.tool import (
    BlobMessage,
    JsonMessage,
    LogMessage,
    TextMessage,
    ToolEntity,
    VariableMessage,
)
from dify_plugin_client.parameters import cast_tool_parameters
from daemon_payloads import TENANT, tool_declaration, tool_provider_row
from fixture_server import FixtureDaemon, Reply, error_body, sse_line, success_body

INVOKE = f"/plugin/{TENANT}/dispatch/tool/invoke"
TOOL = f"/plugin/{TENANT}/management/tool"

# docs/http.md §2.4, byte for byte.
SPEC_INVOKE_ERROR_LINE = (
    b'data: {"code":-500,"message":"{\\"message\\":\\"{\\\\\\"args\\\\\\":{},\\\\\\"error_type\\\\\\":'
    b'\\\\\\"InvokeRateLimitError\\\\\\",\\\\\\"message\\\\\\":\\\\\\"429 too many\\\\\\"}\\",'
    b'\\"error_type\\":\\"PluginInvokeError\\",\\"args\\":null}","data":null}\n\n'
)


def chunk(kind: str, message: object, meta: object = None) -> bytes:
    return sse_line(success_body({"type": kind, "message": message, "meta": meta}))


def test_spec_invoke_error_line_is_what_the_fixture_builds() -> None:
    inner = json.dumps({"args": {}, "error_type": "InvokeRateLimitError", "message": "429 too many"},
                       separators=(",", ":"))
    assert sse_line(error_body(-500, "PluginInvokeError", inner)) == SPEC_INVOKE_ERROR_LINE


def test_example_invoke_streams_text(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", TOOL, tool_provider_row())
    daemon.sse("POST", INVOKE, [chunk("text", {"text": "hel"}), chunk("text", {"text": "lo"}),
                                chunk("json", {"json_object": {"a": 1}})])
    printed = ""
    for msg in client.invoke(tenant_id=TENANT, user_id="u", tool_provider="acme/searcher/search",
                             tool_name="search", credentials={}, tool_parameters={"query": "hi"}):
        if msg.type == "text":
            printed += msg.message.text
    assert printed == "hello"
    request = daemon.requests_to(INVOKE)[0]
    assert request.headers["x-plugin-id"] == "acme/searcher"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "user_id": "u",
        "conversation_id": None,
        "app_id": None,
        "message_id": None,
        "data": {
            "provider": "search",
            "tool": "search",
            "credentials": {},
            "credential_type": "api-key",
            "tool_parameters": {"query": "hi"},
        },
    }


def test_every_chunk_type_is_parsed(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    payload = b"\x00\x01binary" * 3
    daemon.sse("POST", INVOKE, [
        chunk("link", {"text": "https://example.com"}),
        chunk("json", {"a": 1}),  # no json_object: the whole message is wrapped
        chunk("blob", {"blob": base64.b64encode(payload).decode()}, {"mime_type": "application/octet-stream"}),
        chunk("variable", {"variable_name": "v", "variable_value": [1, 2], "stream": False}),
        chunk("log", {"id": "1", "label": "step", "status": "success", "data": {"k": "v"}, "metadata": {}}),
        chunk("file", {"anything": True}, {"file": {"id": "f"}}),
        chunk("retriever_resources", {"retriever_resources": [{"content": "c"}], "context": "ctx"}),
    ])
    messages = list(client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {}, validate_parameters=False))
    assert [m.type.value for m in messages] == ["link", "json", "blob", "variable", "log", "file",
                                                "retriever_resources"]
    assert isinstance(messages[0].message, TextMessage) and messages[0].message.text == "https://example.com"
    assert isinstance(messages[1].message, JsonMessage) and messages[1].message.json_object == {"a": 1}
    assert isinstance(messages[2].message, BlobMessage) and messages[2].message.blob == payload
    assert messages[2].meta == {"mime_type": "application/octet-stream"}
    assert isinstance(messages[3].message, VariableMessage) and messages[3].message.variable_value == [1, 2]
    assert isinstance(messages[4].message, LogMessage) and messages[4].message.status == "success"
    assert messages[5].meta == {"file": {"id": "f"}}


def test_blob_chunks_are_merged_per_id(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    first, second = b"a" * 8192, b"b" * 100

    def blob_chunk(i: int, data: bytes, end: bool, blob_id: str = "f1") -> bytes:
        return chunk("blob_chunk", {"id": blob_id, "sequence": i, "total_length": 8292,
                                    "blob": base64.b64encode(data).decode(), "end": end}, {"mime_type": f"m{i}"})

    daemon.sse("POST", INVOKE, [blob_chunk(0, first, False), chunk("text", {"text": "between"}),
                                blob_chunk(1, second, True)])
    messages = list(client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {}, validate_parameters=False))
    assert [m.type.value for m in messages] == ["text", "blob"]
    assert isinstance(messages[1].message, BlobMessage) and messages[1].message.blob == first + second
    assert messages[1].meta == {"mime_type": "m1"}


def test_oversized_blob_chunk_fails(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.sse("POST", INVOKE, [chunk("blob_chunk", {"id": "x", "sequence": 0, "total_length": 9000,
                                                     "blob": base64.b64encode(b"z" * 9000).decode(), "end": True})])
    with pytest.raises(PluginDaemonInnerError, match="larger than 8192"):
        list(client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {}, validate_parameters=False))


def test_mid_stream_plugin_invoke_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.sse("POST", INVOKE, [chunk("text", {"text": "partial"}), SPEC_INVOKE_ERROR_LINE])
    received: list[str] = []
    with pytest.raises(PluginInvokeError) as caught:
        for message in client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {},
                                     validate_parameters=False):
            received.append(message.message.text)
    assert received == ["partial"]
    assert caught.value.code == -500
    assert caught.value.inner_error_type == "InvokeRateLimitError"
    assert caught.value.inner_message == "429 too many"
    assert caught.value.http_status == 200


def test_killed_by_timeout_mid_stream(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.sse("POST", INVOKE, [chunk("text", {"text": "a"}),
                                sse_line(error_body(-500, "PluginDaemonInternalServerError", "killed by timeout"))])
    with pytest.raises(PluginDaemonInternalServerError, match="killed by timeout"):
        list(client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {}, validate_parameters=False))


def test_dispatch_middleware_404_before_stream(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.on("POST", INVOKE, Reply(status=404, body=error_body(-404, "PluginNotFoundError", "plugin not found")))
    with pytest.raises(PluginNotFoundError) as caught:
        list(client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {}, validate_parameters=False))
    assert caught.value.http_status == 404


def test_stream_cut_off_mid_transfer_raises_inner_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.sse("POST", INVOKE, [chunk("text", {"text": "a"})], cut_off=True)
    received = []
    with pytest.raises(PluginDaemonInnerError) as caught:
        for message in client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {},
                                     validate_parameters=False):
            received.append(message)
    assert len(received) == 1
    assert caught.value.__cause__ is not None


def test_garbage_stream_line_raises_inner_error(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.sse("POST", INVOKE, [b"data: not json\n\n"])
    with pytest.raises(PluginDaemonInnerError, match="not JSON"):
        list(client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {}, validate_parameters=False))


def test_empty_stream_yields_nothing(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.sse("POST", INVOKE, [])
    assert list(client.invoke(TENANT, "u", "acme/searcher/search", "search", {}, {},
                              validate_parameters=False)) == []


# ------------------------------------------------------------------------------------------ parameters


def test_parameters_are_cast_by_declaration(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", TOOL, tool_provider_row())
    daemon.sse("POST", INVOKE, [chunk("text", {"text": "ok"})])
    messages = client.invoke(
        TENANT, "u", "acme/searcher/search", "typed", {"api_key": "k"},
        {"text": 42, "flag": "yes", "mode": "fast", "token": 123, "doc": [{"id": "f1"}],
         "docs": {"id": "f2"}, "extra": "kept"},
        credential_type="oauth2", conversation_id="c", app_id="a", message_id="m",
    )
    assert [m.message.text for m in messages] == ["ok"]
    body = daemon.requests_to(INVOKE)[0].json()
    assert body["data"]["tool_parameters"] == {
        "text": "42", "count": 3, "flag": True, "mode": "fast", "token": "123",
        "doc": {"id": "f1"}, "docs": [{"id": "f2"}], "extra": "kept"}
    assert body["data"]["credentials"] == {"api_key": "k"}
    assert body["data"]["credential_type"] == "oauth2"
    assert (body["conversation_id"], body["app_id"], body["message_id"]) == ("c", "a", "m")


def test_invalid_parameters_fail_before_the_invoke_request(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    daemon.json("GET", TOOL, tool_provider_row())
    daemon.sse("POST", INVOKE, [chunk("text", {"text": "never"})])
    with pytest.raises(ToolParameterValidationError) as caught:
        client.invoke(TENANT, "u", "acme/searcher/search", "typed", {},
                      {"count": "eleven", "flag": "maybe", "mode": "medium", "doc": [{}, {}]})
    problems = "\n".join(caught.value.problems)
    assert "'text' is required" in problems
    assert "expects a number" in problems
    assert "expects a boolean" in problems
    assert "not one of the options ['fast', 'slow']" in problems
    assert "exactly one file" in problems
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ToolParameterValidationError, match="must be <= 10"):
        client.invoke(TENANT, "u", "acme/searcher/search", "typed", {}, {"text": "t", "count": 11})
    with pytest.raises(ToolParameterValidationError, match="has no tool 'nope'"):
        client.invoke(TENANT, "u", "acme/searcher/search", "nope", {}, {})
    assert daemon.requests_to(INVOKE) == []


def test_given_declaration_skips_the_lookup(daemon: FixtureDaemon, client: DifyPluginClient) -> None:
    tool = ToolEntity.model_validate(tool_declaration()["tools"][1])
    daemon.sse("POST", INVOKE, [])
    list(client.invoke(TENANT, "u", "acme/searcher/search", "typed", {}, {"text": "t", "count": "2.5"},
                       tool_declaration=tool))
    assert daemon.requests_to(TOOL) == []
    assert daemon.requests_to(INVOKE)[0].json()["data"]["tool_parameters"] == {"text": "t", "count": 2.5}


def test_cast_rules_directly() -> None:
    tool = ToolEntity.model_validate(tool_declaration()["tools"][1])
    cast = cast_tool_parameters(tool, {"text": True, "count": 7, "flag": 0, "mode": "slow", "token": "s"})
    assert cast == {"text": "true", "count": 7, "flag": False, "mode": "slow", "token": "s"}
    with pytest.raises(ToolParameterValidationError, match="expects a string"):
        cast_tool_parameters(tool, {"text": {"nested": 1}})
    with pytest.raises(ToolParameterValidationError, match="file object"):
        cast_tool_parameters(tool, {"text": "t", "docs": ["not-a-file"]})
    with pytest.raises(ToolParameterValidationError, match="finite"):
        cast_tool_parameters(tool, {"text": "t", "count": "nan"})
