"""Pure helpers: schema ``$ref`` resolution, provider ids, envelope decoding, blob handling, models."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from dify_plugin_client import GenericProviderID, merge_blob_chunks
from dify_plugin_client.entities import I18nObject, PluginDeclaration, ToolInvokeMessage
from dify_plugin_client.errors import (
    PluginDaemonBadRequestError,
    PluginDaemonInnerError,
    PluginDaemonUnknownError,
    error_from_envelope,
)
from dify_plugin_client.schema_refs import resolve_schema_refs


def test_local_and_dify_refs_are_resolved_and_siblings_win() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/thing", "description": "overridden"},
            "f": {"$ref": "https://dify.ai/schemas/v1/file.json"},
            "list": {"type": "array", "items": [{"$ref": "#/$defs/thing"}]},
        },
        "$defs": {"thing": {"type": "string", "description": "a thing"}},
    }
    resolved = resolve_schema_refs(schema)
    assert resolved["properties"]["a"] == {"type": "string", "description": "overridden"}
    assert resolved["properties"]["f"]["properties"]["dify_builtin_type"]["enum"] == ["File"]
    assert resolved["properties"]["list"]["items"] == [{"type": "string", "description": "a thing"}]
    assert schema["properties"]["a"] == {"$ref": "#/$defs/thing", "description": "overridden"}  # not mutated


def test_unknown_and_cyclic_refs_are_left_in_place() -> None:
    assert resolve_schema_refs({"$ref": "https://example.com/x.json"}) == {"$ref": "https://example.com/x.json"}
    assert resolve_schema_refs({"$ref": "#/missing"}) == {"$ref": "#/missing"}
    cyclic = {"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
              "$ref": "#/$defs/node"}
    resolved = resolve_schema_refs(cyclic)
    assert resolved["type"] == "object"
    assert resolved["properties"]["next"] == {"$ref": "#/$defs/node"}


def test_custom_registry() -> None:
    registry = {"https://dify.ai/schemas/v1/qa.json": {"type": "object", "title": "QA"}}
    assert resolve_schema_refs({"$ref": "https://dify.ai/schemas/v1/qa.json"}, registry)["title"] == "QA"


@pytest.mark.parametrize(
    ("text", "plugin_id", "provider"),
    [("acme/search/web", "acme/search", "web"), ("search/web", "langgenius/search", "web"),
     ("google", "langgenius/google", "google")],
)
def test_provider_ids(text: str, plugin_id: str, provider: str) -> None:
    parsed = GenericProviderID.parse(text)
    assert (parsed.plugin_id, parsed.provider_name) == (plugin_id, provider)


@pytest.mark.parametrize("text", ["", "a/b/c/d", "a//c", "a/b c/d"])
def test_bad_provider_ids(text: str) -> None:
    with pytest.raises(ValueError):
        GenericProviderID.parse(text)


def test_error_from_envelope_edge_cases() -> None:
    bad = error_from_envelope({"code": -400, "message": '{"message":"m","error_type":"PluginDaemonBadRequestError",'
                                                         '"args":{"k":1}}', "data": None})
    assert isinstance(bad, PluginDaemonBadRequestError) and bad.error_args == {"k": 1}
    inner = error_from_envelope({"code": -500, "message": '{"message":"x","error_type":"PluginDaemonInnerError"}'})
    assert isinstance(inner, PluginDaemonInnerError) and inner.message == "x"
    assert isinstance(error_from_envelope({"code": -500, "message": '{"no_type": 1}'}), PluginDaemonInnerError)
    assert isinstance(error_from_envelope({"code": -500, "message": '"just a string"'}), PluginDaemonInnerError)
    unknown = error_from_envelope({"code": -500, "message": '{"message":"?","error_type":"Weird"}'})
    assert isinstance(unknown, PluginDaemonUnknownError) and unknown.error_type == "Weird"


def test_blob_round_trips_as_standard_base64() -> None:
    raw = b"\xff\xfe\x00binary"
    wire = {"type": "blob", "message": {"blob": base64.b64encode(raw).decode()}, "meta": None}
    message = ToolInvokeMessage.model_validate(wire)
    assert message.message is not None and getattr(message.message, "blob") == raw
    assert message.model_dump(mode="json") == wire
    assert ToolInvokeMessage.model_validate_json(message.model_dump_json()) == message
    with pytest.raises(ValueError):
        ToolInvokeMessage.model_validate({"type": "blob", "message": {"blob": "***"}, "meta": None})


def test_merge_blob_chunks_interleaved_ids_and_limits() -> None:
    def part(blob_id: str, data: bytes, end: bool) -> ToolInvokeMessage:
        return ToolInvokeMessage.model_validate({"type": "blob_chunk", "message": {
            "id": blob_id, "sequence": 0, "total_length": 0, "blob": base64.b64encode(data).decode(), "end": end},
            "meta": {"id": blob_id}})

    merged = list(merge_blob_chunks([part("a", b"1", False), part("b", b"x", False), part("a", b"2", True),
                                     part("b", b"y", True)]))
    assert [(m.meta, getattr(m.message, "blob")) for m in merged] == [({"id": "a"}, b"12"), ({"id": "b"}, b"xy")]
    with pytest.raises(PluginDaemonInnerError, match="larger than 3 bytes"):
        list(merge_blob_chunks([part("a", b"12", False), part("a", b"34", True)], max_file_bytes=3))


def test_models_are_lenient_and_fill_languages() -> None:
    label = I18nObject.model_validate({"en_US": "Hello"})
    assert (label.zh_Hans, label.ja_JP, label.pt_BR) == ("Hello", "Hello", "Hello")
    declaration = PluginDeclaration.model_validate(
        {"version": "1.0.0", "name": "m", "model": {"provider": "x"}, "future_field": 1, "tags": None})
    assert declaration.category == "model" and declaration.tags == []
    assert declaration.model_extra == {"future_field": 1}
    assert PluginDeclaration.model_validate({"version": "1.0.0", "name": "e"}).category == "extension"
