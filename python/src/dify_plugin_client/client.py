"""``DifyPluginClient``: one method per daemon route that Dify's API server calls for plugins and tools.

Owns: the synchronous public surface: method names, parameter names (those of the package's specification,
plus the older names ``installation_id``, ``original``/``new`` and ``identifiers`` as keywords) and return
types; polling of install tasks. The requests themselves are described in ``routes`` (shared with
``AsyncDifyPluginClient``) and executed by ``DaemonTransport``.
Must not: hold state between calls other than the HTTP connection pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from . import routes
from .config import PluginConfig
from .entities.bundle import PluginBundleDependency
from .entities.daemon import (
    PluginDecodeResponse,
    PluginInstallTask,
    PluginInstallTaskStartResponse,
    PluginInstallTaskStatus,
    PluginListResponse,
    PluginLogsResponse,
    PluginToolProviderEntity,
)
from .entities.plugin import (
    MissingPluginDependency,
    PluginDeclaration,
    PluginEntity,
    PluginInstallation,
    PluginInstallationSource,
)
from .entities.tool import BlobInvokeMessage, ToolEntity, ToolInvokeMessageUnion, ToolParameter
from .errors import PluginDaemonInnerError, PluginDaemonNotFoundError
from .provider_id import GenericProviderID
from .routes import MAX_BLOB_CHUNK_BYTES, MAX_MERGED_BLOB_BYTES, BlobChunkMerger, M, either_name
from .transport import DaemonTransport


def merge_blob_chunks(
    messages: Iterable[M],
    max_file_bytes: int = MAX_MERGED_BLOB_BYTES,
    max_chunk_bytes: int = MAX_BLOB_CHUNK_BYTES,
) -> Iterator[M | BlobInvokeMessage]:
    """Join ``blob_chunk`` messages per ``id`` into one ``blob`` message (with the last chunk's ``meta``)."""
    merger = BlobChunkMerger(max_file_bytes, max_chunk_bytes)
    for message in messages:
        merged = merger.feed(message)
        if merged is not None:
            yield merged


def is_finished(task: PluginInstallTask) -> bool:
    return task.status in (PluginInstallTaskStatus.Success, PluginInstallTaskStatus.Failed)


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
        return self._transport.call(routes.upload_pkg(tenant_id, pkg, verify_signature))

    def upload_bundle(
        self, tenant_id: str, bundle: bytes, verify_signature: bool = False
    ) -> list[PluginBundleDependency]:
        """Upload a ``.difybndl``; returns the dependencies it lists."""
        return self._transport.call(routes.upload_bundle(tenant_id, bundle, verify_signature))

    def install_from_identifiers(
        self,
        tenant_id: str,
        identifiers: Sequence[str],
        source: PluginInstallationSource | str,
        metas: Sequence[Mapping[str, Any]],
    ) -> PluginInstallTaskStartResponse:
        """Start installing already-uploaded plugins; ``metas`` must have one entry per identifier."""
        return self._transport.call(routes.install_from_identifiers(tenant_id, identifiers, source, metas))

    def upgrade_plugin(
        self,
        tenant_id: str,
        original_plugin_unique_identifier: str | None = None,
        new_plugin_unique_identifier: str | None = None,
        source: PluginInstallationSource | str | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        original: str | None = None,
        new: str | None = None,
    ) -> PluginInstallTaskStartResponse:
        """Upgrade the tenant's installation of ``original_plugin_unique_identifier`` to the uploaded
        ``new_plugin_unique_identifier`` (``original`` / ``new`` are accepted as the same keywords)."""
        old_id = either_name("upgrade_plugin", "original_plugin_unique_identifier",
                             original_plugin_unique_identifier, "original", original)
        new_id = either_name("upgrade_plugin", "new_plugin_unique_identifier", new_plugin_unique_identifier, "new", new)
        return self._transport.call(routes.upgrade_plugin(tenant_id, old_id, new_id, source, meta))

    def fetch_plugin_installation_tasks(
        self, tenant_id: str, page: int = 1, page_size: int = 256
    ) -> list[PluginInstallTask]:
        return self._transport.call(routes.fetch_plugin_installation_tasks(tenant_id, page, page_size))

    def fetch_plugin_installation_task(self, tenant_id: str, task_id: str) -> PluginInstallTask:
        return self._transport.call(routes.fetch_plugin_installation_task(tenant_id, task_id))

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
            if is_finished(task):
                return task
            if time.monotonic() + poll_interval > deadline:
                raise TimeoutError(
                    f"install task {task_id} did not finish within {timeout:g}s (status {task.status.value})"
                )
            time.sleep(poll_interval)

    def delete_plugin_installation_task(self, tenant_id: str, task_id: str) -> bool:
        return self._transport.call(routes.delete_plugin_installation_task(tenant_id, task_id))

    def delete_all_plugin_installation_task_items(self, tenant_id: str) -> bool:
        return self._transport.call(routes.delete_all_plugin_installation_task_items(tenant_id))

    def delete_plugin_installation_task_item(self, tenant_id: str, task_id: str, identifier: str) -> bool:
        """Remove one plugin's entry from a task (the identifier goes raw into the path)."""
        return self._transport.call(routes.delete_plugin_installation_task_item(tenant_id, task_id, identifier))

    def fetch_missing_dependencies(
        self,
        tenant_id: str,
        plugin_unique_identifiers: Sequence[str] | None = None,
        *,
        identifiers: Sequence[str] | None = None,
    ) -> list[MissingPluginDependency]:
        """Which of the identifiers the tenant lacks (``identifiers`` is accepted as the same keyword)."""
        wanted = either_name("fetch_missing_dependencies", "plugin_unique_identifiers", plugin_unique_identifiers,
                             "identifiers", identifiers)
        return self._transport.call(routes.fetch_missing_dependencies(tenant_id, wanted))

    def fetch_plugin_installation_by_ids(
        self, tenant_id: str, plugin_ids: Sequence[str]
    ) -> list[PluginInstallation]:
        return self._transport.call(routes.fetch_plugin_installation_by_ids(tenant_id, plugin_ids))

    def uninstall(
        self, tenant_id: str, plugin_installation_id: str | None = None, *, installation_id: str | None = None
    ) -> bool:
        """Uninstall by installation id (``PluginEntity.installation_id``; ``installation_id`` is accepted as
        the same keyword). An unknown id raises the daemon's error (``PluginNotFoundError``)."""
        target = either_name("uninstall", "plugin_installation_id", plugin_installation_id,
                             "installation_id", installation_id)
        return self._transport.call(routes.uninstall(tenant_id, target))

    # ---------------------------------------------------------------- listing and lookups

    def list_plugins(self, tenant_id: str) -> list[PluginEntity]:
        """The tenant's first 256 installed plugins, newest first."""
        return self.list_plugins_with_total(tenant_id, 1, 256).list

    def list_plugins_with_total(self, tenant_id: str, page: int, page_size: int) -> PluginListResponse:
        return self._transport.call(routes.list_plugins_with_total(tenant_id, page, page_size))

    def fetch_plugin_manifest(self, tenant_id: str, plugin_unique_identifier: str) -> PluginDeclaration:
        """The manifest of an uploaded or installed package; an unknown one raises ``PluginNotFoundBadRequestError``
        (both a ``PluginDaemonBadRequestError``, as the daemon reports it, and a ``PluginNotFoundError``)."""
        return self._transport.call(routes.fetch_plugin_manifest(tenant_id, plugin_unique_identifier))

    def decode_plugin_from_identifier(self, tenant_id: str, plugin_unique_identifier: str) -> PluginDecodeResponse:
        return self._transport.call(routes.decode_plugin_from_identifier(tenant_id, plugin_unique_identifier))

    def fetch_plugin_readme(self, tenant_id: str, plugin_unique_identifier: str, language: str = "en_US") -> str:
        """The plugin's README in ``language`` (or the daemon's fallback); ``""`` when it has none."""
        try:
            response = self._transport.call(routes.fetch_plugin_readme(tenant_id, plugin_unique_identifier, language))
        except PluginDaemonNotFoundError:
            return ""
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return ""
            raise
        return response.content

    def fetch_plugin_logs(
        self, tenant_id: str, plugin_id: str, after: int = 0, limit: int | None = None
    ) -> PluginLogsResponse:
        """The newest lines of the tenant's installed ``plugin_id`` (``author/name``) on the answering node:
        stderr, ``log`` events and the daemon's process notes, oldest first; only ``seq > after``, at most
        ``limit`` (the daemon's default when ``None``). Poll with ``after=response.last_seq`` to follow."""
        return self._transport.call(routes.fetch_plugin_logs(tenant_id, plugin_id, after, limit))

    # ---------------------------------------------------------------- direct invocation and admin API

    def invoke_v2(
        self,
        plugin_unique_identifier: str,
        route: str,
        tenant_id: str,
        data: Mapping[str, Any],
        user_id: str = "",
        conversation_id: str | None = None,
        app_id: str | None = None,
        message_id: str | None = None,
    ) -> Generator[Any, None, None]:
        """Invoke the version ``plugin_unique_identifier`` through ``/v2/invoke/dispatch<route>`` (``route`` as
        in the tenant dispatch API, e.g. ``/tool/invoke``) for ``tenant_id``, whether or not that tenant
        installed it. Yields each streamed item's ``data`` as it is; an error envelope raises while iterating."""
        call = routes.invoke_v2(plugin_unique_identifier, route, tenant_id, user_id, data, conversation_id, app_id,
                                message_id)
        return _items(self._transport.stream(call))

    def extract_v2(self, plugin_unique_identifier: str) -> dict[str, Any]:
        """``{unique_identifier, manifest, verification}`` decoded from the version's stored package."""
        return self._transport.call(routes.extract_v2(plugin_unique_identifier))

    def admin_reinstall_serverless(
        self, admin_api_key: str, plugin_unique_identifier: str
    ) -> Generator[Any, None, None]:
        """Launch a serverless version at the connector again; yields ``{"event": "info"|"done"|"error",
        "data": ...}`` (the admin API, ``X-Admin-Api-Key``)."""
        return _items(self._transport.stream(routes.admin_reinstall_serverless(admin_api_key, plugin_unique_identifier)))

    def admin_switch_serverless_endpoint(
        self, admin_api_key: str, plugin_unique_identifier: str, function_name: str, function_url: str
    ) -> bool:
        """Point a serverless version at another function (the admin API, ``X-Admin-Api-Key``)."""
        return self._transport.call(
            routes.admin_switch_serverless_endpoint(admin_api_key, plugin_unique_identifier, function_name, function_url)
        )

    def fetch_plugin_by_identifier(self, tenant_id: str, identifier: str) -> bool:
        """Whether any tenant has the plugin ``identifier`` installed."""
        return self._transport.call(routes.fetch_plugin_by_identifier(tenant_id, identifier))

    # ---------------------------------------------------------------- tools

    def fetch_tool_providers(self, tenant_id: str) -> list[PluginToolProviderEntity]:
        """Every tool provider of the tenant, named ``plugin_id/provider`` with ``$ref``s resolved."""
        return [routes.name_provider(p) for p in self._transport.call(routes.fetch_tool_providers(tenant_id))]

    def fetch_tool_provider(self, tenant_id: str, provider: str) -> PluginToolProviderEntity:
        """One tool provider by ``org/plugin/provider`` (``plugin_id/provider``)."""
        return routes.name_provider(self._transport.call(routes.fetch_tool_provider(tenant_id, provider)))

    def check_tools_existence(
        self, tenant_id: str, provider_ids: Sequence[Mapping[str, str] | GenericProviderID | str]
    ) -> list[bool]:
        """For each ``{plugin_id, provider_name}`` (or ``org/plugin/provider``), whether it is installed."""
        return self._transport.call(routes.check_tools_existence(tenant_id, provider_ids))

    def fetch_tool_declaration(self, tenant_id: str, tool_provider: str, tool_name: str) -> ToolEntity:
        """The declaration of one tool; ``ToolParameterValidationError`` when the provider lacks it."""
        return routes.find_tool(self.fetch_tool_provider(tenant_id, tool_provider), tool_provider, tool_name)

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
    ) -> Generator[ToolInvokeMessageUnion, None, None]:
        """Invoke a tool and return a generator over its messages (SSE chunks, blob chunks merged).

        Each message is a ``ToolInvokeMessage`` of the variant for its ``type`` (``msg.type == "text"``
        narrows ``msg.message`` to ``TextMessage`` for type checkers). Parameters are cast by the tool's
        declaration (fetched from the daemon unless ``tool_declaration`` is given) before the invoke request
        is sent; problems raise ``ToolParameterValidationError`` right here, not on iteration. Errors inside
        the stream (e.g. ``PluginInvokeError``) raise while iterating.
        """
        routes.check_invoke_arguments(tenant_id, tool_provider, tool_name, credentials)
        declaration = None
        if validate_parameters:
            declaration = tool_declaration or self.fetch_tool_declaration(tenant_id, tool_provider, tool_name)
        call = routes.invoke(
            tenant_id, user_id, tool_provider, tool_name, credentials, tool_parameters,
            credential_type, conversation_id, app_id, message_id, declaration,
        )
        return _generator(merge_blob_chunks(self._transport.stream(call)))

    def validate_provider_credentials(
        self, tenant_id: str, user_id: str, provider: str, credentials: Mapping[str, Any]
    ) -> bool:
        """Ask the plugin whether ``credentials`` are valid for the tool provider."""
        for chunk in self._transport.stream(
            routes.validate_provider_credentials(tenant_id, user_id, provider, credentials)
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
        call = routes.get_runtime_parameters(
            tenant_id, user_id, provider, credentials, tool, conversation_id, app_id, message_id
        )
        for chunk in self._transport.stream(call):
            return chunk
        return []


def _generator(messages: Iterator[ToolInvokeMessageUnion]) -> Generator[ToolInvokeMessageUnion, None, None]:
    yield from messages


__all__ = ["DifyPluginClient", "merge_blob_chunks"]


def _items(items: Iterator[Any]) -> Generator[Any, None, None]:
    yield from items
