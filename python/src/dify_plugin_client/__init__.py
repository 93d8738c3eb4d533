"""Python client of the Dify plugin daemon HTTP API.

Owns: the public surface (``DifyPluginClient``, ``AsyncDifyPluginClient``, ``PluginConfig``, the exceptions,
the entity models).
Must not: import the CLI (``dify_plugin_client.cli`` is loaded only by the console script).
"""

from .async_client import AsyncDifyPluginClient
from .client import DifyPluginClient, merge_blob_chunks
from .config import PluginConfig
from .entities.plugin import PluginInstallationSource
from .entities.tool import ToolInvokeMessage, ToolInvokeMessageType, ToolInvokeMessageUnion
from .errors import (
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
    ToolParameterValidationError,
)
from .provider_id import GenericProviderID

__version__ = "0.1.0"

__all__ = [
    "AsyncDifyPluginClient",
    "DifyPluginClient",
    "GenericProviderID",
    "PluginConfig",
    "PluginDaemonBadRequestError",
    "PluginDaemonError",
    "PluginDaemonInnerError",
    "PluginDaemonInternalServerError",
    "PluginDaemonNotFoundError",
    "PluginDaemonResponseError",
    "PluginDaemonUnauthorizedError",
    "PluginDaemonUnknownError",
    "PluginInstallationSource",
    "PluginInvokeError",
    "PluginNotFoundBadRequestError",
    "PluginNotFoundError",
    "PluginPermissionDeniedError",
    "PluginUniqueIdentifierError",
    "ToolInvokeMessage",
    "ToolInvokeMessageType",
    "ToolInvokeMessageUnion",
    "ToolParameterValidationError",
    "merge_blob_chunks",
]
