"""Tool provider declarations and the chunks of a tool invocation stream.

Owns: ``ToolProviderEntity`` (the ``tool`` part of a plugin declaration), ``ToolEntity``, ``ToolParameter``,
and ``ToolInvokeMessage`` with one typed ``message`` model per chunk ``type`` (docs/http.md §6.3).
Must not: cast or validate invocation parameters (see ``dify_plugin_client.parameters``) or do I/O.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, TypeAdapter, field_serializer, field_validator, model_validator

from .common import DaemonModel, I18nObject


class ToolParameterType(StrEnum):
    """Parameter types a tool declaration may use (unknown types are kept as plain strings)."""

    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    SELECT = "select"
    SECRET_INPUT = "secret-input"
    FILE = "file"
    FILES = "files"
    APP_SELECTOR = "app-selector"
    MODEL_SELECTOR = "model-selector"
    TOOLS_SELECTOR = "array[tools]"
    ANY = "any"
    DYNAMIC_SELECT = "dynamic-select"
    CHECKBOX = "checkbox"
    ARRAY = "array"
    OBJECT = "object"
    SYSTEM_FILES = "system-files"


class ToolParameterForm(StrEnum):
    SCHEMA = "schema"
    FORM = "form"
    LLM = "llm"


class ToolParameterOption(DaemonModel):
    value: str
    label: I18nObject = Field(default_factory=I18nObject)
    icon: str | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _value_as_text(cls, value: Any) -> Any:
        return value if isinstance(value, str) else str(value)


class ToolParameter(DaemonModel):
    name: str
    label: I18nObject = Field(default_factory=I18nObject)
    human_description: I18nObject | None = None
    placeholder: I18nObject | None = None
    type: str
    form: str = ToolParameterForm.LLM.value
    llm_description: str | None = None
    required: bool = False
    multiple: bool = False
    default: Any = None
    min: float | int | None = None
    max: float | int | None = None
    precision: int | None = None
    options: list[ToolParameterOption] = Field(default_factory=list)
    scope: str | None = None
    input_schema: dict[str, Any] | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _options_list(cls, value: Any) -> Any:
        return value if isinstance(value, list) else []

    @field_validator("required", "multiple", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value


class ToolIdentity(DaemonModel):
    author: str = ""
    name: str
    label: I18nObject = Field(default_factory=I18nObject)
    provider: str = ""
    icon: str | None = None


class ToolDescription(DaemonModel):
    human: I18nObject = Field(default_factory=I18nObject)
    llm: str = ""


class ToolEntity(DaemonModel):
    identity: ToolIdentity
    parameters: list[ToolParameter] = Field(default_factory=list)
    description: ToolDescription | None = None
    output_schema: dict[str, Any] | None = None
    has_runtime_parameters: bool = False

    @field_validator("parameters", mode="before")
    @classmethod
    def _null_parameters(cls, value: Any) -> Any:
        return [] if value is None else value

    def parameter(self, name: str) -> ToolParameter | None:
        return next((p for p in self.parameters if p.name == name), None)


class ToolProviderIdentity(DaemonModel):
    author: str = ""
    name: str
    description: I18nObject = Field(default_factory=I18nObject)
    icon: str = ""
    icon_dark: str | None = None
    label: I18nObject = Field(default_factory=I18nObject)
    tags: list[str] | None = Field(default_factory=list)


class ToolProviderEntity(DaemonModel):
    identity: ToolProviderIdentity
    credentials_schema: list[dict[str, Any]] = Field(default_factory=list)
    oauth_schema: dict[str, Any] | None = None
    tools: list[ToolEntity] = Field(default_factory=list)
    plugin_id: str | None = None

    @field_validator("credentials_schema", mode="before")
    @classmethod
    def _credentials_list(cls, value: Any) -> Any:
        # Manifests may declare credentials as a mapping name -> config; normalise to a list.
        if value is None:
            return []
        if isinstance(value, dict):
            return [dict(v, name=v.get("name", k)) if isinstance(v, dict) else {"name": k} for k, v in value.items()]
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _null_tools(cls, value: Any) -> Any:
        return [] if value is None else value

    def tool(self, name: str) -> ToolEntity | None:
        return next((t for t in self.tools if t.identity.name == name), None)


class ToolInvokeMessageType(StrEnum):
    TEXT = "text"
    FILE = "file"
    BLOB = "blob"
    BLOB_CHUNK = "blob_chunk"
    JSON = "json"
    LINK = "link"
    IMAGE = "image"
    IMAGE_LINK = "image_link"
    BINARY_LINK = "binary_link"
    VARIABLE = "variable"
    LOG = "log"
    RETRIEVER_RESOURCES = "retriever_resources"


def _decode_base64(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"blob is not valid base64: {exc}") from exc
    return value


class TextMessage(DaemonModel):
    text: str


class JsonMessage(DaemonModel):
    """A ``json`` chunk: the object is ``json_object`` (Dify's name), also readable as ``data``."""

    json_object: dict[str, Any] | list[Any]
    suppress_output: bool = False

    @property
    def data(self) -> dict[str, Any] | list[Any]:
        """The JSON value (the same object as ``json_object``)."""
        return self.json_object


class BlobMessage(DaemonModel):
    """Decoded bytes; serialised back to base64 (as on the wire) by ``model_dump(mode="json")``."""

    blob: bytes

    @field_serializer("blob", when_used="json")
    def _encode(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    @field_validator("blob", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return _decode_base64(value)


class BlobChunkMessage(DaemonModel):
    id: str
    sequence: int
    total_length: int
    blob: bytes
    end: bool

    @field_serializer("blob", when_used="json")
    def _encode(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    @field_validator("blob", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return _decode_base64(value)


class VariableMessage(DaemonModel):
    variable_name: str
    variable_value: Any = None
    stream: bool = False


class LogMessage(DaemonModel):
    id: str
    label: str
    parent_id: str | None = None
    error: str | None = None
    status: str
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] | None = Field(default_factory=dict)


class RetrieverResourceMessage(DaemonModel):
    retriever_resources: list[dict[str, Any]] = Field(default_factory=list)
    context: str = ""


class FileMessage(DaemonModel):
    file_marker: str = "file_marker"


ToolInvokeMessagePayload = Union[
    TextMessage,
    JsonMessage,
    BlobMessage,
    BlobChunkMessage,
    VariableMessage,
    LogMessage,
    RetrieverResourceMessage,
    FileMessage,
]

_PAYLOAD_BY_TYPE: dict[str, type[DaemonModel]] = {
    "text": TextMessage,
    "link": TextMessage,
    "image": TextMessage,
    "image_link": TextMessage,
    "binary_link": TextMessage,
    "json": JsonMessage,
    "blob": BlobMessage,
    "blob_chunk": BlobChunkMessage,
    "variable": VariableMessage,
    "log": LogMessage,
    "retriever_resources": RetrieverResourceMessage,
    "file": FileMessage,
}


class ToolInvokeMessage(DaemonModel):
    """One chunk of a tool invocation stream: ``{type, message, meta}``; the base of the typed variants.

    The client yields the variant for each chunk's ``type`` (``TextInvokeMessage``, ``JsonInvokeMessage``,
    ...; together ``ToolInvokeMessageUnion``, discriminated by ``type``), so a type checker narrows
    ``message`` after ``if msg.type == "json":``. ``type`` is declared as a string literal per variant and
    holds the matching ``ToolInvokeMessageType`` member (a ``str``) at run time. ``message`` is parsed into
    the model for ``type``: ``TextMessage`` for text and links, ``BlobMessage`` with decoded bytes for
    blobs, ...; ``file`` messages become a ``FileMessage`` marker (the file itself is described in ``meta``).
    """

    MessageType: ClassVar[Any] = ToolInvokeMessageType

    type: str = ToolInvokeMessageType.TEXT
    message: ToolInvokeMessagePayload | None = None
    meta: dict[str, Any] | None = None

    @field_validator("type", mode="after")
    @classmethod
    def _type_as_enum(cls, value: str) -> str:
        return ToolInvokeMessageType(value)

    @model_validator(mode="before")
    @classmethod
    def _parse_message_by_type(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kind = value.get("type", "text")
        payload_model = _PAYLOAD_BY_TYPE.get(kind) if isinstance(kind, str) else None
        message = value.get("message")
        if payload_model is None:
            return value
        if kind == "file":
            message = {"file_marker": "file_marker"}
        elif kind == "json" and isinstance(message, dict) and "json_object" not in message:
            message = {"json_object": message}
        if message is not None and not isinstance(message, DaemonModel):
            message = payload_model.model_validate(message)
        return {**value, "message": message}


class TextInvokeMessage(ToolInvokeMessage):
    type: Literal["text"] = "text"
    message: TextMessage


class LinkInvokeMessage(ToolInvokeMessage):
    type: Literal["link"] = "link"
    message: TextMessage


class ImageInvokeMessage(ToolInvokeMessage):
    type: Literal["image"] = "image"
    message: TextMessage


class ImageLinkInvokeMessage(ToolInvokeMessage):
    type: Literal["image_link"] = "image_link"
    message: TextMessage


class BinaryLinkInvokeMessage(ToolInvokeMessage):
    type: Literal["binary_link"] = "binary_link"
    message: TextMessage


class JsonInvokeMessage(ToolInvokeMessage):
    type: Literal["json"] = "json"
    message: JsonMessage


class BlobInvokeMessage(ToolInvokeMessage):
    type: Literal["blob"] = "blob"
    message: BlobMessage


class BlobChunkInvokeMessage(ToolInvokeMessage):
    type: Literal["blob_chunk"] = "blob_chunk"
    message: BlobChunkMessage


class VariableInvokeMessage(ToolInvokeMessage):
    type: Literal["variable"] = "variable"
    message: VariableMessage


class LogInvokeMessage(ToolInvokeMessage):
    type: Literal["log"] = "log"
    message: LogMessage


class RetrieverResourcesInvokeMessage(ToolInvokeMessage):
    type: Literal["retriever_resources"] = "retriever_resources"
    message: RetrieverResourceMessage


class FileInvokeMessage(ToolInvokeMessage):
    type: Literal["file"] = "file"
    message: FileMessage = Field(default_factory=FileMessage)


ToolInvokeMessageUnion = Union[
    TextInvokeMessage,
    LinkInvokeMessage,
    ImageInvokeMessage,
    ImageLinkInvokeMessage,
    BinaryLinkInvokeMessage,
    JsonInvokeMessage,
    BlobInvokeMessage,
    BlobChunkInvokeMessage,
    VariableInvokeMessage,
    LogInvokeMessage,
    RetrieverResourcesInvokeMessage,
    FileInvokeMessage,
]
"""Every chunk variant; ``msg.type == "<type>"`` narrows it to one (and ``msg.message`` to its model)."""

TOOL_INVOKE_MESSAGE_ADAPTER: TypeAdapter[ToolInvokeMessageUnion] = TypeAdapter(
    Annotated[ToolInvokeMessageUnion, Field(discriminator="type")]
)


def parse_tool_invoke_message(data: Any) -> ToolInvokeMessageUnion:
    """Validate one stream chunk (``{type, message, meta}``) into its typed variant."""
    return TOOL_INVOKE_MESSAGE_ADAPTER.validate_python(data)


__all__ = [
    "ToolParameterType",
    "ToolParameterForm",
    "ToolParameterOption",
    "ToolParameter",
    "ToolIdentity",
    "ToolDescription",
    "ToolEntity",
    "ToolProviderIdentity",
    "ToolProviderEntity",
    "ToolInvokeMessageType",
    "ToolInvokeMessage",
    "ToolInvokeMessagePayload",
    "ToolInvokeMessageUnion",
    "TOOL_INVOKE_MESSAGE_ADAPTER",
    "parse_tool_invoke_message",
    "TextInvokeMessage",
    "LinkInvokeMessage",
    "ImageInvokeMessage",
    "ImageLinkInvokeMessage",
    "BinaryLinkInvokeMessage",
    "JsonInvokeMessage",
    "BlobInvokeMessage",
    "BlobChunkInvokeMessage",
    "VariableInvokeMessage",
    "LogInvokeMessage",
    "RetrieverResourcesInvokeMessage",
    "FileInvokeMessage",
    "TextMessage",
    "JsonMessage",
    "BlobMessage",
    "BlobChunkMessage",
    "VariableMessage",
    "LogMessage",
    "RetrieverResourceMessage",
    "FileMessage",
]
