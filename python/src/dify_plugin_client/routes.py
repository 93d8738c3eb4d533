"""The daemon routes both clients call, as request descriptions, and the client-side steps around them.

Owns: one function per route returning a ``Call`` / ``StreamCall`` (path, body, expected model; docs/http.md
§4.2, §6, §7, §A.4), argument checks, the resolution of the parameter names callers may use (the names of
the package's specification and the older ones of this package), provider naming ``plugin_id/provider``,
``$ref`` resolution in tool schemas and the merging of ``blob_chunk`` chunks. ``DifyPluginClient`` and
``AsyncDifyPluginClient`` only execute these, so both clients send exactly the same requests.
Must not: perform I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from .entities.bundle import PluginBundleDependency
from .entities.daemon import (
    PluginBasicBooleanResponse,
    PluginDecodeResponse,
    PluginInstallTask,
    PluginInstallTaskStartResponse,
    PluginListResponse,
    PluginLogsResponse,
    PluginReadmeResponse,
    PluginToolProviderEntity,
)
from .entities.plugin import (
    MissingPluginDependency,
    PluginDeclaration,
    PluginInstallation,
    PluginInstallationSource,
)
from .entities.tool import (
    BlobChunkMessage,
    BlobInvokeMessage,
    BlobMessage,
    ToolEntity,
    ToolInvokeMessage,
    ToolInvokeMessageUnion,
    ToolParameter,
    parse_tool_invoke_message,
)
from .errors import PluginDaemonInnerError, ToolParameterValidationError
from .parameters import cast_tool_parameters
from .provider_id import GenericProviderID
from .schema_refs import resolve_schema_refs
from .transport import Call, StreamCall

MAX_BLOB_CHUNK_BYTES = 8192
MAX_MERGED_BLOB_BYTES = 30 * 1024 * 1024

_JSON = {"Content-Type": "application/json"}

M = TypeVar("M", bound=ToolInvokeMessage)
_NOT_IN_PATH = set("/?#% \t\r\n")


# ------------------------------------------------------------------------------------------- arguments


def check_tenant(tenant_id: str) -> None:
    if not isinstance(tenant_id, str) or not tenant_id or "/" in tenant_id:
        raise ValueError(f"tenant_id must be a non-empty string without '/', got {tenant_id!r}")


def _management(tenant_id: str, route: str) -> str:
    check_tenant(tenant_id)
    return f"plugin/{tenant_id}/management/{route}"


def _source_value(source: PluginInstallationSource | str) -> str:
    try:
        return PluginInstallationSource(source).value
    except ValueError:
        allowed = ", ".join(s.value for s in PluginInstallationSource)
        raise ValueError(f"source must be one of {allowed}, got {source!r}") from None


def _identifier_list(identifiers: Sequence[str], what: str) -> list[str]:
    if isinstance(identifiers, (str, bytes)):
        raise ValueError(f"{what} must be a list of plugin unique identifiers, not a single string")
    result = list(identifiers)
    if not all(isinstance(i, str) and i for i in result):
        raise ValueError(f"{what} must contain non-empty strings")
    return result


def _path_part(value: str) -> str:
    """A value that goes into the URL path as one segment."""
    if not isinstance(value, str) or not value or _NOT_IN_PATH & set(value):
        raise ValueError(f"expected a non-empty id usable as one path segment, got {value!r}")
    return value


def either_name(method: str, name: str, value: Any, other_name: str, other: Any) -> Any:
    """The argument given under ``name`` or its other accepted name ``other_name`` (exactly one of them)."""
    if value is not None and other is not None:
        raise TypeError(f"{method}() got both {name!r} and {other_name!r}; pass one of them")
    if value is None and other is None:
        raise TypeError(f"{method}() missing required argument: {name!r}")
    return value if value is not None else other


# ------------------------------------------------------------------------------------------- tool providers


def _prepare_tool_declaration(declaration: Any, provider_name: str | None) -> None:
    """Fill ``tools[].identity.provider`` and resolve ``$ref``s in tool schemas, in place (raw JSON)."""
    if not isinstance(declaration, dict):
        return
    identity = declaration.get("identity")
    name = provider_name or (identity.get("name") if isinstance(identity, dict) else None)
    for tool in declaration.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        tool_identity = tool.get("identity")
        if isinstance(tool_identity, dict) and name:
            tool_identity["provider"] = name
        if isinstance(tool.get("output_schema"), dict):
            tool["output_schema"] = resolve_schema_refs(tool["output_schema"])
        for parameter in tool.get("parameters") or []:
            if isinstance(parameter, dict) and isinstance(parameter.get("input_schema"), dict):
                parameter["input_schema"] = resolve_schema_refs(parameter["input_schema"])


def name_provider(entity: PluginToolProviderEntity) -> PluginToolProviderEntity:
    """Rename the provider ``plugin_id/provider`` and point each tool at that name (as Dify does)."""
    full_name = f"{entity.plugin_id}/{entity.declaration.identity.name}"
    entity.declaration.identity.name = full_name
    entity.declaration.plugin_id = entity.plugin_id
    for tool in entity.declaration.tools:
        tool.identity.provider = full_name
    return entity


def find_tool(provider: PluginToolProviderEntity, tool_provider: str, tool_name: str) -> ToolEntity:
    """The declaration of ``tool_name``; ``ToolParameterValidationError`` when the provider lacks it."""
    tool = provider.declaration.tool(tool_name)
    if tool is None:
        known = [t.identity.name for t in provider.declaration.tools]
        raise ToolParameterValidationError(
            tool_name, [f"provider {tool_provider!r} has no tool {tool_name!r} (tools: {known})"]
        )
    return tool


# ------------------------------------------------------------------------------------------- blob chunks


class BlobChunkMerger:
    """Joins ``blob_chunk`` messages per ``id`` into one ``blob`` message (with the last chunk's ``meta``)."""

    def __init__(self, max_file_bytes: int = MAX_MERGED_BLOB_BYTES, max_chunk_bytes: int = MAX_BLOB_CHUNK_BYTES):
        self.max_file_bytes = max_file_bytes
        self.max_chunk_bytes = max_chunk_bytes
        self._buffers: dict[str, bytearray] = {}

    def feed(self, message: M) -> M | BlobInvokeMessage | None:
        """The message to hand on: ``message`` itself, the merged blob, or ``None`` while a blob is incomplete."""
        chunk = message.message
        if message.type != "blob_chunk" or not isinstance(chunk, BlobChunkMessage):
            return message
        if len(chunk.blob) > self.max_chunk_bytes:
            raise PluginDaemonInnerError(-500, f"blob chunk {chunk.id} is larger than {self.max_chunk_bytes} bytes")
        buffer = self._buffers.setdefault(chunk.id, bytearray())
        buffer.extend(chunk.blob)
        if len(buffer) > self.max_file_bytes:
            raise PluginDaemonInnerError(-500, f"blob {chunk.id} is larger than {self.max_file_bytes} bytes")
        if not chunk.end:
            return None
        data = bytes(self._buffers.pop(chunk.id))
        return BlobInvokeMessage(type="blob", message=BlobMessage(blob=data), meta=message.meta)


# ------------------------------------------------------------------------------------------- routes


def _multipart(field_name: str, data: bytes, verify_signature: bool) -> dict[str, Any]:
    return {
        "files": {field_name: (field_name, bytes(data), "application/octet-stream")},
        "data": {"verify_signature": "true" if verify_signature else "false"},
    }


def upload_pkg(tenant_id: str, pkg: bytes, verify_signature: bool) -> Call[PluginDecodeResponse]:
    if not isinstance(pkg, (bytes, bytearray)):
        raise ValueError("pkg must be the package bytes")
    return Call(
        "POST",
        _management(tenant_id, "install/upload/package"),
        PluginDecodeResponse,
        _multipart("dify_pkg", pkg, verify_signature),
    )


def upload_bundle(tenant_id: str, bundle: bytes, verify_signature: bool) -> Call[list[PluginBundleDependency]]:
    if not isinstance(bundle, (bytes, bytearray)):
        raise ValueError("bundle must be the bundle bytes")
    return Call(
        "POST",
        _management(tenant_id, "install/upload/bundle"),
        list[PluginBundleDependency],
        _multipart("dify_bundle", bundle, verify_signature),
    )


def install_from_identifiers(
    tenant_id: str,
    identifiers: Sequence[str],
    source: PluginInstallationSource | str,
    metas: Sequence[Mapping[str, Any]],
) -> Call[PluginInstallTaskStartResponse]:
    identifier_list = _identifier_list(identifiers, "identifiers")
    if not identifier_list:
        raise ValueError("identifiers must not be empty")
    meta_list = list(metas)
    if len(meta_list) != len(identifier_list):
        raise ValueError(
            f"identifiers and metas must have the same length ({len(identifier_list)} != {len(meta_list)})"
        )
    if not all(isinstance(m, Mapping) for m in meta_list):
        raise ValueError("every meta must be a mapping")
    body = {
        "plugin_unique_identifiers": identifier_list,
        "source": _source_value(source),
        "metas": [dict(m) for m in meta_list],
    }
    return Call(
        "POST",
        _management(tenant_id, "install/identifiers"),
        PluginInstallTaskStartResponse,
        {"json": body, "headers": _JSON},
    )


def upgrade_plugin(
    tenant_id: str,
    original: str,
    new: str,
    source: PluginInstallationSource | str | None,
    meta: Mapping[str, Any] | None,
) -> Call[PluginInstallTaskStartResponse]:
    if source is None:
        raise TypeError("upgrade_plugin() missing required argument: 'source'")
    body = {
        "original_plugin_unique_identifier": original,
        "new_plugin_unique_identifier": new,
        "source": _source_value(source),
        "meta": dict(meta or {}),
    }
    return Call(
        "POST",
        _management(tenant_id, "install/upgrade"),
        PluginInstallTaskStartResponse,
        {"json": body, "headers": _JSON},
    )


def fetch_plugin_installation_tasks(tenant_id: str, page: int, page_size: int) -> Call[list[PluginInstallTask]]:
    return Call(
        "GET",
        _management(tenant_id, "install/tasks"),
        list[PluginInstallTask],
        {"params": {"page": page, "page_size": page_size}},
    )


def fetch_plugin_installation_task(tenant_id: str, task_id: str) -> Call[PluginInstallTask]:
    return Call("GET", _management(tenant_id, f"install/tasks/{_path_part(task_id)}"), PluginInstallTask)


def delete_plugin_installation_task(tenant_id: str, task_id: str) -> Call[bool]:
    return Call("POST", _management(tenant_id, f"install/tasks/{_path_part(task_id)}/delete"), bool)


def delete_all_plugin_installation_task_items(tenant_id: str) -> Call[bool]:
    return Call("POST", _management(tenant_id, "install/tasks/delete_all"), bool)


def delete_plugin_installation_task_item(tenant_id: str, task_id: str, identifier: str) -> Call[bool]:
    """The identifier goes raw into the path (it contains ``/`` for plugins of an organization)."""
    if not isinstance(identifier, str) or not identifier or (_NOT_IN_PATH - {"/"}) & set(identifier):
        raise ValueError(f"identifier must be a plugin unique identifier, got {identifier!r}")
    route = f"install/tasks/{_path_part(task_id)}/delete/{identifier.lstrip('/')}"
    return Call("POST", _management(tenant_id, route), bool)


def fetch_missing_dependencies(
    tenant_id: str, plugin_unique_identifiers: Sequence[str]
) -> Call[list[MissingPluginDependency]]:
    body = {"plugin_unique_identifiers": _identifier_list(plugin_unique_identifiers, "plugin_unique_identifiers")}
    return Call(
        "POST",
        _management(tenant_id, "installation/missing"),
        list[MissingPluginDependency],
        {"json": body, "headers": _JSON},
    )


def fetch_plugin_installation_by_ids(tenant_id: str, plugin_ids: Sequence[str]) -> Call[list[PluginInstallation]]:
    return Call(
        "POST",
        _management(tenant_id, "installation/fetch/batch"),
        list[PluginInstallation],
        {"json": {"plugin_ids": _identifier_list(plugin_ids, "plugin_ids")}, "headers": _JSON},
    )


def uninstall(tenant_id: str, plugin_installation_id: str) -> Call[bool]:
    if not isinstance(plugin_installation_id, str) or not plugin_installation_id:
        raise ValueError(f"plugin_installation_id must be a non-empty string, got {plugin_installation_id!r}")
    return Call(
        "POST",
        _management(tenant_id, "uninstall"),
        bool,
        {"json": {"plugin_installation_id": plugin_installation_id}, "headers": _JSON},
    )


def list_plugins_with_total(tenant_id: str, page: int, page_size: int) -> Call[PluginListResponse]:
    if page < 1 or not 1 <= page_size <= 256:
        raise ValueError("page must be >= 1 and page_size between 1 and 256")
    return Call(
        "GET",
        _management(tenant_id, "list"),
        PluginListResponse,
        {"params": {"page": page, "page_size": page_size, "response_type": "paged"}},
    )


def fetch_plugin_manifest(tenant_id: str, plugin_unique_identifier: str) -> Call[PluginDeclaration]:
    return Call(
        "GET",
        _management(tenant_id, "fetch/manifest"),
        PluginDeclaration,
        {"params": {"plugin_unique_identifier": plugin_unique_identifier}},
    )


def decode_plugin_from_identifier(tenant_id: str, plugin_unique_identifier: str) -> Call[PluginDecodeResponse]:
    return Call(
        "GET",
        _management(tenant_id, "decode/from_identifier"),
        PluginDecodeResponse,
        {"params": {"plugin_unique_identifier": plugin_unique_identifier}},
    )


def fetch_plugin_readme(tenant_id: str, plugin_unique_identifier: str, language: str) -> Call[PluginReadmeResponse]:
    params = {"tenant_id": tenant_id, "plugin_unique_identifier": plugin_unique_identifier, "language": language}
    return Call("GET", _management(tenant_id, "fetch/readme"), PluginReadmeResponse, {"params": params})


def fetch_plugin_logs(tenant_id: str, plugin_id: str, after: int, limit: int | None) -> Call[PluginLogsResponse]:
    """``plugin_id`` is ``author/name`` or a unique identifier; only lines with ``seq > after``, at most ``limit``."""
    if not isinstance(plugin_id, str) or "/" not in plugin_id:
        raise ValueError(f"plugin_id must be author/name, got {plugin_id!r}")
    if not isinstance(after, int) or after < 0:
        raise ValueError(f"after must be a non-negative integer, got {after!r}")
    params: dict[str, Any] = {"plugin_id": plugin_id}
    if after > 0:
        params["after"] = after
    if limit is not None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        params["limit"] = limit
    return Call("GET", _management(tenant_id, "logs"), PluginLogsResponse, {"params": params})


def fetch_plugin_by_identifier(tenant_id: str, identifier: str) -> Call[bool]:
    return Call(
        "GET", _management(tenant_id, "fetch/identifier"), bool, {"params": {"plugin_unique_identifier": identifier}}
    )


def fetch_tool_providers(tenant_id: str) -> Call[list[PluginToolProviderEntity]]:
    def transform(data: Any) -> Any:
        for row in data if isinstance(data, list) else []:
            if isinstance(row, dict):
                _prepare_tool_declaration(row.get("declaration"), None)
        return data

    return Call(
        "GET",
        _management(tenant_id, "tools"),
        list[PluginToolProviderEntity],
        {"params": {"page": 1, "page_size": 256}},
        transform,
    )


def fetch_tool_provider(tenant_id: str, provider: str) -> Call[PluginToolProviderEntity]:
    provider_id = GenericProviderID.parse(provider)

    def transform(data: Any) -> Any:
        if isinstance(data, dict):
            _prepare_tool_declaration(data.get("declaration"), provider_id.provider_name)
        return data

    return Call(
        "GET",
        _management(tenant_id, "tool"),
        PluginToolProviderEntity,
        {"params": {"provider": provider_id.provider_name, "plugin_id": provider_id.plugin_id}},
        transform,
    )


def check_tools_existence(
    tenant_id: str, provider_ids: Sequence[Mapping[str, str] | GenericProviderID | str]
) -> Call[list[bool]]:
    items: list[dict[str, str]] = []
    for entry in provider_ids:
        if isinstance(entry, str):
            entry = GenericProviderID.parse(entry)
        if isinstance(entry, GenericProviderID):
            items.append({"plugin_id": entry.plugin_id, "provider_name": entry.provider_name})
        elif (
            isinstance(entry, Mapping)
            and isinstance(entry.get("plugin_id"), str)
            and isinstance(entry.get("provider_name"), str)
        ):
            items.append({"plugin_id": entry["plugin_id"], "provider_name": entry["provider_name"]})
        else:
            raise ValueError(f"provider id must be a mapping with plugin_id and provider_name, got {entry!r}")
    return Call(
        "POST",
        _management(tenant_id, "tools/check_existence"),
        list[bool],
        {"json": {"provider_ids": items}, "headers": _JSON},
    )


def check_invoke_arguments(tenant_id: str, tool_provider: str, tool_name: str, credentials: Any) -> None:
    """What ``invoke`` checks before fetching anything."""
    check_tenant(tenant_id)
    GenericProviderID.parse(tool_provider)
    if not isinstance(tool_name, str) or not tool_name:
        raise ValueError("tool_name must be a non-empty string")
    if not isinstance(credentials, Mapping):
        raise ValueError("credentials must be a mapping")


def invoke(
    tenant_id: str,
    user_id: str,
    tool_provider: str,
    tool_name: str,
    credentials: Mapping[str, Any],
    tool_parameters: Mapping[str, Any],
    credential_type: str,
    conversation_id: str | None,
    app_id: str | None,
    message_id: str | None,
    declaration: ToolEntity | None,
) -> StreamCall[ToolInvokeMessageUnion]:
    """The invoke request; parameters are cast by ``declaration`` unless it is ``None`` (sent as given)."""
    check_invoke_arguments(tenant_id, tool_provider, tool_name, credentials)
    provider_id = GenericProviderID.parse(tool_provider)
    if declaration is not None:
        parameters = cast_tool_parameters(declaration, tool_parameters)
    else:
        if not isinstance(tool_parameters, Mapping):
            raise ValueError("tool_parameters must be a mapping")
        parameters = dict(tool_parameters)
    body = {
        "user_id": user_id,
        "conversation_id": conversation_id,
        "app_id": app_id,
        "message_id": message_id,
        "data": {
            "provider": provider_id.provider_name,
            "tool": tool_name,
            "credentials": dict(credentials),
            "credential_type": credential_type,
            "tool_parameters": parameters,
        },
    }
    return StreamCall(
        "POST",
        f"plugin/{tenant_id}/dispatch/tool/invoke",
        parse_tool_invoke_message,
        {"json": body, "headers": {"X-Plugin-ID": provider_id.plugin_id, **_JSON}},
    )


def validate_provider_credentials(
    tenant_id: str, user_id: str, provider: str, credentials: Mapping[str, Any]
) -> StreamCall[PluginBasicBooleanResponse]:
    check_tenant(tenant_id)
    provider_id = GenericProviderID.parse(provider)
    body = {"user_id": user_id, "data": {"provider": provider_id.provider_name, "credentials": dict(credentials)}}
    return StreamCall(
        "POST",
        f"plugin/{tenant_id}/dispatch/tool/validate_credentials",
        PluginBasicBooleanResponse.model_validate,
        {"json": body, "headers": {"X-Plugin-ID": provider_id.plugin_id, **_JSON}},
    )


def _runtime_parameters(data: Any) -> list[ToolParameter]:
    parameters = data.get("parameters", []) if isinstance(data, dict) else data
    return [ToolParameter.model_validate(p) for p in parameters or []]


def get_runtime_parameters(
    tenant_id: str,
    user_id: str,
    provider: str,
    credentials: Mapping[str, Any],
    tool: str,
    conversation_id: str | None,
    app_id: str | None,
    message_id: str | None,
) -> StreamCall[list[ToolParameter]]:
    check_tenant(tenant_id)
    provider_id = GenericProviderID.parse(provider)
    body = {
        "user_id": user_id,
        "conversation_id": conversation_id,
        "app_id": app_id,
        "message_id": message_id,
        "data": {"provider": provider_id.provider_name, "tool": tool, "credentials": dict(credentials)},
    }
    return StreamCall(
        "POST",
        f"plugin/{tenant_id}/dispatch/tool/get_runtime_parameters",
        _runtime_parameters,
        {"json": body, "headers": {"X-Plugin-ID": provider_id.plugin_id, **_JSON}},
    )


# ---------------------------------------------------------------- direct invocation and admin API


def _identifier_header(plugin_unique_identifier: str) -> dict[str, str]:
    if not plugin_unique_identifier:
        raise ValueError("plugin_unique_identifier is required")
    return {"X-Plugin-Unique-Identifier": plugin_unique_identifier}


def _admin_header(admin_api_key: str) -> dict[str, str]:
    if not admin_api_key:
        raise ValueError("admin_api_key is required")
    return {"X-Admin-Api-Key": admin_api_key}


def invoke_v2(
    plugin_unique_identifier: str,
    route: str,
    tenant_id: str,
    user_id: str,
    data: Mapping[str, Any],
    conversation_id: str | None,
    app_id: str | None,
    message_id: str | None,
) -> StreamCall[Any]:
    """``POST /v2/invoke/dispatch<route>``: the tenant travels in the body; each item is the raw ``data``."""
    if not tenant_id:
        raise ValueError("tenant_id is required")
    body = {"tenant_id": tenant_id, "user_id": user_id, "conversation_id": conversation_id, "app_id": app_id,
            "message_id": message_id, "data": dict(data)}
    path = "v2/invoke/dispatch/" + route.lstrip("/")
    return StreamCall("POST", path, lambda item: item,
                      {"json": body, "headers": _identifier_header(plugin_unique_identifier)})


def extract_v2(plugin_unique_identifier: str) -> Call[dict[str, Any]]:
    """``GET /v2/invoke/extract``: ``{unique_identifier, manifest, verification}`` of the stored package."""
    return Call("GET", "v2/invoke/extract", dict[str, Any], {"headers": _identifier_header(plugin_unique_identifier)})


def admin_reinstall_serverless(admin_api_key: str, plugin_unique_identifier: str) -> StreamCall[dict[str, Any]]:
    """``POST /admin/plugin/serverless/reinstall``: a stream of ``{event, data}``."""
    return StreamCall("POST", "admin/plugin/serverless/reinstall", lambda item: dict(item),
                      {"json": {"plugin_unique_identifier": plugin_unique_identifier},
                       "headers": _admin_header(admin_api_key)})


def admin_switch_serverless_endpoint(
    admin_api_key: str, plugin_unique_identifier: str, function_name: str, function_url: str
) -> Call[bool]:
    """``POST /admin/plugin/serverless/switch-endpoint``."""
    body = {"plugin_unique_identifier": plugin_unique_identifier, "function_name": function_name,
            "function_url": function_url}
    return Call("POST", "admin/plugin/serverless/switch-endpoint", bool,
                {"json": body, "headers": _admin_header(admin_api_key)})
