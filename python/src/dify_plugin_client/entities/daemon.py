"""Payloads of management routes that are not plugin declarations: install tasks, decode results,
paginated lists, readmes and tool provider rows (docs/http.md §4.2, §7).

Owns: ``PluginDecodeResponse``, ``PluginInstallTask*``, ``PluginListResponse``, ``PluginReadmeResponse``,
``PluginToolProviderEntity``, ``PluginBasicBooleanResponse``.
Must not: do I/O.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from .common import BasePluginEntity, DaemonModel, I18nObject
from .plugin import PluginDeclaration, PluginEntity
from .tool import ToolProviderEntity


class PluginInstallTaskStatus(StrEnum):
    Pending = "pending"
    Running = "running"
    Success = "success"
    Failed = "failed"


class PluginInstallTaskPluginStatus(DaemonModel):
    plugin_unique_identifier: str
    plugin_id: str
    status: PluginInstallTaskStatus
    message: str = ""
    icon: str = ""
    icon_dark: str | None = None
    labels: I18nObject = Field(default_factory=I18nObject)
    source: str | None = None


class PluginInstallTask(BasePluginEntity):
    status: PluginInstallTaskStatus
    tenant_id: str | None = None
    total_plugins: int
    completed_plugins: int
    plugins: list[PluginInstallTaskPluginStatus] = Field(default_factory=list)

    @field_validator("plugins", mode="before")
    @classmethod
    def _null_plugins(cls, value: Any) -> Any:
        return [] if value is None else value


class PluginInstallTaskStartResponse(DaemonModel):
    all_installed: bool
    task_id: str


class PluginVerificationAuthorizedCategory(StrEnum):
    Langgenius = "langgenius"
    Partner = "partner"
    Community = "community"


class PluginVerification(DaemonModel):
    AuthorizedCategory: ClassVar[Any] = PluginVerificationAuthorizedCategory

    authorized_category: PluginVerificationAuthorizedCategory


class PluginDecodeResponse(DaemonModel):
    unique_identifier: str
    manifest: PluginDeclaration
    verification: PluginVerification | None = None


class PluginListResponse(DaemonModel):
    list: list[PluginEntity]
    total: int

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"list": value, "total": len(value)}
        return value


class PluginReadmeResponse(DaemonModel):
    content: str
    language: str = ""


class PluginLogEntry(DaemonModel):
    """One line of a plugin's log ring: stderr, a ``log`` event, an error or a daemon note."""

    seq: int
    time: str
    source: str
    level: str = ""
    message: str = ""


class PluginLogsResponse(DaemonModel):
    """``management/logs``: the newest lines (oldest first) of an installed plugin on the answering node."""

    plugin_id: str
    plugin_unique_identifier: str = ""
    entries: list[PluginLogEntry] = Field(default_factory=list)
    last_seq: int = 0
    dropped: int = 0


class PluginToolProviderEntity(DaemonModel):
    """A tool provider row (``management/tools`` item, ``management/tool``)."""

    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tenant_id: str | None = None
    provider: str
    plugin_unique_identifier: str
    plugin_id: str
    declaration: ToolProviderEntity


class PluginBasicBooleanResponse(DaemonModel):
    result: bool
    credentials: dict[str, Any] | None = None


__all__ = [
    "PluginInstallTaskStatus",
    "PluginInstallTaskPluginStatus",
    "PluginInstallTask",
    "PluginInstallTaskStartResponse",
    "PluginVerification",
    "PluginVerificationAuthorizedCategory",
    "PluginDecodeResponse",
    "PluginListResponse",
    "PluginReadmeResponse",
    "PluginToolProviderEntity",
    "PluginBasicBooleanResponse",
]
