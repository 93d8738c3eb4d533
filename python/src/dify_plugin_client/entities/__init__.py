"""Pydantic v2 models of every payload the client reads from the daemon.

Owns: re-exports of the entity modules. Must not: do I/O.
"""

from .bundle import PluginBundleDependency
from .common import DaemonModel, I18nObject
from .daemon import (
    PluginBasicBooleanResponse,
    PluginDecodeResponse,
    PluginInstallTask,
    PluginInstallTaskPluginStatus,
    PluginInstallTaskStartResponse,
    PluginInstallTaskStatus,
    PluginListResponse,
    PluginReadmeResponse,
    PluginToolProviderEntity,
    PluginVerification,
)
from .plugin import (
    MissingPluginDependency,
    PluginCategory,
    PluginDeclaration,
    PluginEntity,
    PluginInstallation,
    PluginInstallationSource,
)
from .tool import (
    ToolEntity,
    ToolInvokeMessage,
    ToolInvokeMessageType,
    ToolParameter,
    ToolParameterType,
    ToolProviderEntity,
)

__all__ = [
    "DaemonModel",
    "I18nObject",
    "MissingPluginDependency",
    "PluginBasicBooleanResponse",
    "PluginBundleDependency",
    "PluginCategory",
    "PluginDeclaration",
    "PluginDecodeResponse",
    "PluginEntity",
    "PluginInstallTask",
    "PluginInstallTaskPluginStatus",
    "PluginInstallTaskStartResponse",
    "PluginInstallTaskStatus",
    "PluginInstallation",
    "PluginInstallationSource",
    "PluginListResponse",
    "PluginReadmeResponse",
    "PluginToolProviderEntity",
    "PluginVerification",
    "ToolEntity",
    "ToolInvokeMessage",
    "ToolInvokeMessageType",
    "ToolParameter",
    "ToolParameterType",
    "ToolProviderEntity",
]
