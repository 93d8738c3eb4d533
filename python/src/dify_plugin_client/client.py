"""``DifyPluginClient``: one method per daemon route that Dify's API server calls for plugins and tools.

Owns: route paths, request bodies and the response model of each call (docs/http-api.md §4.2, §6, §7, §A.4),
plus the client-side steps Dify performs around them: provider naming ``plugin_id/provider``, ``$ref``
resolution in tool schemas, parameter casting before an invocation, and merging of ``blob_chunk`` chunks.
Must not: hold state between calls other than the HTTP connection pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from .config import PluginConfig
from .entities.bundle import PluginBundleDependency
from .entities.daemon import (
    PluginBasicBooleanResponse,
    PluginDecodeResponse,
    PluginInstallTask,
    PluginInstallTaskStartResponse,
    PluginInstallTaskStatus,
    PluginListResponse,
    PluginReadmeResponse,
    PluginToolProviderEntity,
)
from .entities.plugin import (
    MissingPluginDependency,
    PluginDeclaration,
    PluginEntity,
    PluginInstallation,
    PluginInstallationSource,
)
from .entities.tool import (
    BlobChunkMessage,
    BlobMessage,
    ToolEntity,
    ToolInvokeMessage,
    ToolInvokeMessageType,
    ToolParameter,
)
from .errors import PluginDaemonInnerError, PluginDaemonNotFoundError, ToolParameterValidationError
from .parameters import cast_tool_parameters
from .provider_id import GenericProviderID
from .schema_refs import resolve_schema_refs
from .transport import DaemonTransport

MAX_BLOB_CHUNK_BYTES = 8192
MAX_MERGED_BLOB_BYTES = 30 * 1024 * 1024

_JSON = {"Content-Type": "application/json"}


def _management(tenant_id: str, route: str) -> str:
    _check_tenant(tenant_id)
    return f"plugin/{tenant_id}/management/{route}"


def _check_tenant(tenant_id: str) -> None:
    if not isinstance(tenant_id, str) or not tenant_id or "/" in tenant_id:
        raise ValueError(f"tenant_id must be a non-empty string without '/', got {tenant_id!r}")


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


def _name_provider(entity: PluginToolProviderEntity) -> PluginToolProviderEntity:
    """Rename the provider ``plugin_id/provider`` and point each tool at that name (as Dify does)."""
    full_name = f"{entity.plugin_id}/{entity.declaration.identity.name}"
    entity.declaration.identity.name = full_name
    entity.declaration.plugin_id = entity.plugin_id
    for tool in entity.declaration.tools:
        tool.identity.provider = full_name
    return entity


def merge_blob_chunks(
    messages: Iterable[ToolInvokeMessage],
    max_file_bytes: int = MAX_MERGED_BLOB_BYTES,
    max_chunk_bytes: int = MAX_BLOB_CHUNK_BYTES,
) -> Iterator[ToolInvokeMessage]:
    """Join ``blob_chunk`` messages per ``id`` into one ``blob`` message (with the last chunk's ``meta``)."""
    buffers: dict[str, bytearray] = {}
    for message in messages:
        if message.type != ToolInvokeMessageType.BLOB_CHUNK or not isinstance(message.message, BlobChunkMessage):
            yield message
            continue
        chunk = message.message
        if len(chunk.blob) > max_chunk_bytes:
            raise PluginDaemonInnerError(-500, f"blob chunk {chunk.id} is larger than {max_chunk_bytes} bytes")
        buffer = buffers.setdefault(chunk.id, bytearray())
        buffer.extend(chunk.blob)
        if len(buffer) > max_file_bytes:
            raise PluginDaemonInnerError(-500, f"blob {chunk.id} is larger than {max_file_bytes} bytes")
        if chunk.end:
            data = bytes(buffers.pop(chunk.id))
            yield ToolInvokeMessage(type=ToolInvokeMessageType.BLOB, message=BlobMessage(blob=data), meta=message.meta)


class DifyPluginClient:
    """Synchronous client of the plugin daemon's HTTP API, modelled on Dify's ``core.plugin.impl`` clients.

    Use as a context manager (or call ``close()``) to release the connection pool.
    """

    def __init__(self, config: PluginConfig | None = None, *, http_client: httpx.Client | None = None) -> None:
        self.config = config or PluginConfig()
        self._transport = DaemonTransport(self.config, http_client)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "DifyPluginClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- health

    def health_check(self) -> dict[str, Any]:
        """``GET /health/check`` (no envelope, no key needed)."""
        response = self._transport.send("GET", "health/check")
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise PluginDaemonInnerError(-500, f"unexpected health check body: {response.text[:200]}")
        return body

    # ---------------------------------------------------------------- packages and installation

    def upload_pkg(self, tenant_id: str, pkg: bytes, verify_signature: bool = False) -> PluginDecodeResponse:
        """Upload a ``.difypkg``; returns its unique identifier, decoded manifest and verification."""
        if not isinstance(pkg, (bytes, bytearray)):
            raise ValueError("pkg must be the package bytes")
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "install/upload/package"),
            PluginDecodeResponse,
            files={"dify_pkg": ("dify_pkg", bytes(pkg), "application/octet-stream")},
            data={"verify_signature": "true" if verify_signature else "false"},
        )

    def upload_bundle(
        self, tenant_id: str, bundle: bytes, verify_signature: bool = False
    ) -> list[PluginBundleDependency]:
        """Upload a ``.difybndl``; returns the dependencies it lists."""
        if not isinstance(bundle, (bytes, bytearray)):
            raise ValueError("bundle must be the bundle bytes")
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "install/upload/bundle"),
            list[PluginBundleDependency],
            files={"dify_bundle": ("dify_bundle", bytes(bundle), "application/octet-stream")},
            data={"verify_signature": "true" if verify_signature else "false"},
        )

    def install_from_identifiers(
        self,
        tenant_id: str,
        identifiers: Sequence[str],
        source: PluginInstallationSource | str,
        metas: Sequence[Mapping[str, Any]],
    ) -> PluginInstallTaskStartResponse:
        """Start installing already-uploaded plugins; ``metas`` must have one entry per identifier."""
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
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "install/identifiers"),
            PluginInstallTaskStartResponse,
            json={
                "plugin_unique_identifiers": identifier_list,
                "source": _source_value(source),
                "metas": [dict(m) for m in meta_list],
            },
            headers=_JSON,
        )

    def upgrade_plugin(
        self,
        tenant_id: str,
        original: str,
        new: str,
        source: PluginInstallationSource | str,
        meta: Mapping[str, Any] | None = None,
    ) -> PluginInstallTaskStartResponse:
        """Upgrade the tenant's installation ``original`` to the uploaded package ``new``."""
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "install/upgrade"),
            PluginInstallTaskStartResponse,
            json={
                "original_plugin_unique_identifier": original,
                "new_plugin_unique_identifier": new,
                "source": _source_value(source),
                "meta": dict(meta or {}),
            },
            headers=_JSON,
        )

    def fetch_plugin_installation_tasks(
        self, tenant_id: str, page: int = 1, page_size: int = 256
    ) -> list[PluginInstallTask]:
        return self._transport.request_payload(
            "GET",
            _management(tenant_id, "install/tasks"),
            list[PluginInstallTask],
            params={"page": page, "page_size": page_size},
        )

    def fetch_plugin_installation_task(self, tenant_id: str, task_id: str) -> PluginInstallTask:
        return self._transport.request_payload(
            "GET", _management(tenant_id, f"install/tasks/{_path_part(task_id)}"), PluginInstallTask
        )

    def wait_for_installation_task(
        self,
        tenant_id: str,
        task_id: str,
        poll_interval: float = 0.5,
        timeout: float = 600.0,
        on_update: Callable[[PluginInstallTask], None] | None = None,
    ) -> PluginInstallTask:
        """Poll a task until it is ``success`` or ``failed`` (returned either way).

        Raises ``TimeoutError`` when it is still pending or running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            task = self.fetch_plugin_installation_task(tenant_id, task_id)
            if on_update is not None:
                on_update(task)
            if task.status in (PluginInstallTaskStatus.Success, PluginInstallTaskStatus.Failed):
                return task
            if time.monotonic() + poll_interval > deadline:
                raise TimeoutError(
                    f"install task {task_id} did not finish within {timeout:g}s (status {task.status.value})"
                )
            time.sleep(poll_interval)

    def delete_plugin_installation_task(self, tenant_id: str, task_id: str) -> bool:
        return self._transport.request_payload(
            "POST", _management(tenant_id, f"install/tasks/{_path_part(task_id)}/delete"), bool
        )

    def delete_all_plugin_installation_task_items(self, tenant_id: str) -> bool:
        return self._transport.request_payload("POST", _management(tenant_id, "install/tasks/delete_all"), bool)

    def delete_plugin_installation_task_item(self, tenant_id: str, task_id: str, identifier: str) -> bool:
        """Remove one plugin's entry from a task (the identifier goes raw into the path)."""
        if not isinstance(identifier, str) or not identifier or (_NOT_IN_PATH - {"/"}) & set(identifier):
            raise ValueError(f"identifier must be a plugin unique identifier, got {identifier!r}")
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, f"install/tasks/{_path_part(task_id)}/delete/{identifier.lstrip('/')}"),
            bool,
        )

    def fetch_missing_dependencies(
        self, tenant_id: str, identifiers: Sequence[str]
    ) -> list[MissingPluginDependency]:
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "installation/missing"),
            list[MissingPluginDependency],
            json={"plugin_unique_identifiers": _identifier_list(identifiers, "identifiers")},
            headers=_JSON,
        )

    def fetch_plugin_installation_by_ids(
        self, tenant_id: str, plugin_ids: Sequence[str]
    ) -> list[PluginInstallation]:
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "installation/fetch/batch"),
            list[PluginInstallation],
            json={"plugin_ids": _identifier_list(plugin_ids, "plugin_ids")},
            headers=_JSON,
        )

    def uninstall(self, tenant_id: str, installation_id: str) -> bool:
        """Uninstall by installation id (``PluginEntity.installation_id``); unknown ids also return True."""
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "uninstall"),
            bool,
            json={"plugin_installation_id": installation_id},
            headers=_JSON,
        )

    # ---------------------------------------------------------------- listing and lookups

    def list_plugins(self, tenant_id: str) -> list[PluginEntity]:
        """The tenant's first 256 installed plugins, newest first."""
        return self.list_plugins_with_total(tenant_id, 1, 256).list

    def list_plugins_with_total(self, tenant_id: str, page: int, page_size: int) -> PluginListResponse:
        if page < 1 or not 1 <= page_size <= 256:
            raise ValueError("page must be >= 1 and page_size between 1 and 256")
        return self._transport.request_payload(
            "GET",
            _management(tenant_id, "list"),
            PluginListResponse,
            params={"page": page, "page_size": page_size, "response_type": "paged"},
        )

    def fetch_plugin_manifest(self, tenant_id: str, plugin_unique_identifier: str) -> PluginDeclaration:
        return self._transport.request_payload(
            "GET",
            _management(tenant_id, "fetch/manifest"),
            PluginDeclaration,
            params={"plugin_unique_identifier": plugin_unique_identifier},
        )

    def decode_plugin_from_identifier(self, tenant_id: str, plugin_unique_identifier: str) -> PluginDecodeResponse:
        return self._transport.request_payload(
            "GET",
            _management(tenant_id, "decode/from_identifier"),
            PluginDecodeResponse,
            params={"plugin_unique_identifier": plugin_unique_identifier},
        )

    def fetch_plugin_readme(self, tenant_id: str, plugin_unique_identifier: str, language: str = "en_US") -> str:
        """The plugin's README in ``language`` (or the daemon's fallback); ``""`` when it has none."""
        try:
            response = self._transport.request_payload(
                "GET",
                _management(tenant_id, "fetch/readme"),
                PluginReadmeResponse,
                params={
                    "tenant_id": tenant_id,
                    "plugin_unique_identifier": plugin_unique_identifier,
                    "language": language,
                },
            )
        except PluginDaemonNotFoundError:
            return ""
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return ""
            raise
        return response.content

    def fetch_plugin_by_identifier(self, tenant_id: str, identifier: str) -> bool:
        """Whether any tenant has the plugin ``identifier`` installed."""
        return self._transport.request_payload(
            "GET",
            _management(tenant_id, "fetch/identifier"),
            bool,
            params={"plugin_unique_identifier": identifier},
        )

    # ---------------------------------------------------------------- tools

    def fetch_tool_providers(self, tenant_id: str) -> list[PluginToolProviderEntity]:
        """Every tool provider of the tenant, named ``plugin_id/provider`` with ``$ref``s resolved."""

        def transform(data: Any) -> Any:
            for row in data if isinstance(data, list) else []:
                if isinstance(row, dict):
                    _prepare_tool_declaration(row.get("declaration"), None)
            return data

        providers: list[PluginToolProviderEntity] = self._transport.request_payload(
            "GET",
            _management(tenant_id, "tools"),
            list[PluginToolProviderEntity],
            params={"page": 1, "page_size": 256},
            transformer=transform,
        )
        return [_name_provider(p) for p in providers]

    def fetch_tool_provider(self, tenant_id: str, provider: str) -> PluginToolProviderEntity:
        """One tool provider by ``org/plugin/provider`` (``plugin_id/provider``)."""
        provider_id = GenericProviderID.parse(provider)

        def transform(data: Any) -> Any:
            if isinstance(data, dict):
                _prepare_tool_declaration(data.get("declaration"), provider_id.provider_name)
            return data

        entity: PluginToolProviderEntity = self._transport.request_payload(
            "GET",
            _management(tenant_id, "tool"),
            PluginToolProviderEntity,
            params={"provider": provider_id.provider_name, "plugin_id": provider_id.plugin_id},
            transformer=transform,
        )
        return _name_provider(entity)

    def check_tools_existence(
        self, tenant_id: str, provider_ids: Sequence[Mapping[str, str] | GenericProviderID | str]
    ) -> list[bool]:
        """For each ``{plugin_id, provider_name}`` (or ``org/plugin/provider``), whether it is installed."""
        items: list[dict[str, str]] = []
        for entry in provider_ids:
            if isinstance(entry, str):
                entry = GenericProviderID.parse(entry)
            if isinstance(entry, GenericProviderID):
                items.append({"plugin_id": entry.plugin_id, "provider_name": entry.provider_name})
            elif isinstance(entry, Mapping) and isinstance(entry.get("plugin_id"), str) and isinstance(
                entry.get("provider_name"), str
            ):
                items.append({"plugin_id": entry["plugin_id"], "provider_name": entry["provider_name"]})
            else:
                raise ValueError(f"provider id must be a mapping with plugin_id and provider_name, got {entry!r}")
        return self._transport.request_payload(
            "POST",
            _management(tenant_id, "tools/check_existence"),
            list[bool],
            json={"provider_ids": items},
            headers=_JSON,
        )

    def fetch_tool_declaration(self, tenant_id: str, tool_provider: str, tool_name: str) -> ToolEntity:
        """The declaration of one tool; ``ToolParameterValidationError`` when the provider lacks it."""
        provider = self.fetch_tool_provider(tenant_id, tool_provider)
        tool = provider.declaration.tool(tool_name)
        if tool is None:
            known = [t.identity.name for t in provider.declaration.tools]
            raise ToolParameterValidationError(
                tool_name, [f"provider {tool_provider!r} has no tool {tool_name!r} (tools: {known})"]
            )
        return tool

    def invoke(
        self,
        tenant_id: str,
        user_id: str,
        tool_provider: str,
        tool_name: str,
        credentials: Mapping[str, Any],
        tool_parameters: Mapping[str, Any],
        credential_type: str = "api-key",
        conversation_id: str | None = None,
        app_id: str | None = None,
        message_id: str | None = None,
        *,
        tool_declaration: ToolEntity | None = None,
        validate_parameters: bool = True,
    ) -> Generator[ToolInvokeMessage, None, None]:
        """Invoke a tool and return a generator over its messages (SSE chunks, blob chunks merged).

        Parameters are cast by the tool's declaration (fetched from the daemon unless ``tool_declaration`` is
        given) before the invoke request is sent; problems raise ``ToolParameterValidationError`` right here,
        not on iteration. Errors inside the stream (e.g. ``PluginInvokeError``) raise while iterating.
        """
        _check_tenant(tenant_id)
        provider_id = GenericProviderID.parse(tool_provider)
        if not isinstance(tool_name, str) or not tool_name:
            raise ValueError("tool_name must be a non-empty string")
        if not isinstance(credentials, Mapping):
            raise ValueError("credentials must be a mapping")
        if validate_parameters:
            declaration = tool_declaration or self.fetch_tool_declaration(tenant_id, tool_provider, tool_name)
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
        stream = self._transport.stream_payloads(
            "POST",
            f"plugin/{tenant_id}/dispatch/tool/invoke",
            ToolInvokeMessage,
            json=body,
            headers={"X-Plugin-ID": provider_id.plugin_id, **_JSON},
        )
        return _generator(merge_blob_chunks(stream))

    def validate_provider_credentials(
        self, tenant_id: str, user_id: str, provider: str, credentials: Mapping[str, Any]
    ) -> bool:
        """Ask the plugin whether ``credentials`` are valid for the tool provider."""
        _check_tenant(tenant_id)
        provider_id = GenericProviderID.parse(provider)
        for chunk in self._transport.stream_payloads(
            "POST",
            f"plugin/{tenant_id}/dispatch/tool/validate_credentials",
            PluginBasicBooleanResponse,
            json={"user_id": user_id, "data": {"provider": provider_id.provider_name, "credentials": dict(credentials)}},
            headers={"X-Plugin-ID": provider_id.plugin_id, **_JSON},
        ):
            return chunk.result
        return False

    def get_runtime_parameters(
        self,
        tenant_id: str,
        user_id: str,
        provider: str,
        credentials: Mapping[str, Any],
        tool: str,
        conversation_id: str | None = None,
        app_id: str | None = None,
        message_id: str | None = None,
    ) -> list[ToolParameter]:
        """Parameters a tool declares at runtime (``has_runtime_parameters``)."""
        _check_tenant(tenant_id)
        provider_id = GenericProviderID.parse(provider)
        for chunk in self._transport.stream_payloads(
            "POST",
            f"plugin/{tenant_id}/dispatch/tool/get_runtime_parameters",
            dict[str, list[ToolParameter]],
            json={
                "user_id": user_id,
                "conversation_id": conversation_id,
                "app_id": app_id,
                "message_id": message_id,
                "data": {"provider": provider_id.provider_name, "tool": tool, "credentials": dict(credentials)},
            },
            headers={"X-Plugin-ID": provider_id.plugin_id, **_JSON},
        ):
            return chunk.get("parameters", [])
        return []


def _generator(messages: Iterator[ToolInvokeMessage]) -> Generator[ToolInvokeMessage, None, None]:
    yield from messages


_NOT_IN_PATH = set("/?#% \t\r\n")


def _path_part(value: str) -> str:
    """A value that goes into the URL path as one segment."""
    if not isinstance(value, str) or not value or _NOT_IN_PATH & set(value):
        raise ValueError(f"expected a non-empty id usable as one path segment, got {value!r}")
    return value


__all__ = ["DifyPluginClient", "merge_blob_chunks"]
