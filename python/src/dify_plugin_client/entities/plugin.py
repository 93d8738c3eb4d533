"""Plugin declarations and installations as the daemon's management routes return them.

Owns: ``PluginInstallationSource``, ``PluginCategory``, ``PluginDeclaration`` (docs/http.md §7.1),
``PluginInstallation`` / ``PluginEntity`` (§7.8) and ``MissingPluginDependency`` (§7.9).
Must not: do I/O; category is derived here (the daemon sends none), nothing else is invented.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from .common import BasePluginEntity, DaemonModel, I18nObject
from .tool import ToolProviderEntity


class PluginInstallationSource(StrEnum):
    Github = "github"
    Marketplace = "marketplace"
    Package = "package"
    Remote = "remote"


class PluginCategory(StrEnum):
    Tool = "tool"
    Model = "model"
    Extension = "extension"
    AgentStrategy = "agent-strategy"
    Datasource = "datasource"
    Trigger = "trigger"


class PluginResourceRequirements(DaemonModel):
    memory: int = 0
    permission: dict[str, Any] | None = None


class PluginRunner(DaemonModel):
    language: str = ""
    version: str = ""
    entrypoint: str = ""


class PluginDeclarationPlugins(DaemonModel):
    tools: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    endpoints: list[str] = Field(default_factory=list)
    agent_strategies: list[str] = Field(default_factory=list)
    datasources: list[str] = Field(default_factory=list)
    triggers: list[str] = Field(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class PluginDeclarationMeta(DaemonModel):
    version: str | None = None
    arch: list[str] = Field(default_factory=list)
    runner: PluginRunner | None = None
    minimum_dify_version: str | None = None


class PluginDeclaration(DaemonModel):
    """A plugin manifest as decoded by the daemon (icons rewritten to asset ids)."""

    Plugins: ClassVar[Any] = PluginDeclarationPlugins
    Meta: ClassVar[Any] = PluginDeclarationMeta

    version: str
    type: str = "plugin"
    author: str | None = None
    name: str
    label: I18nObject = Field(default_factory=I18nObject)
    description: I18nObject = Field(default_factory=I18nObject)
    icon: str = ""
    icon_dark: str | None = None
    created_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    privacy: str | None = None
    repo: str | None = None
    verified: bool = False
    resource: PluginResourceRequirements = Field(default_factory=PluginResourceRequirements)
    plugins: PluginDeclarationPlugins = Field(default_factory=PluginDeclarationPlugins)
    meta: PluginDeclarationMeta = Field(default_factory=PluginDeclarationMeta)
    category: PluginCategory = PluginCategory.Extension
    tool: ToolProviderEntity | None = None
    model: dict[str, Any] | None = None
    endpoint: dict[str, Any] | None = None
    agent_strategy: dict[str, Any] | None = None
    datasource: dict[str, Any] | None = None
    trigger: dict[str, Any] | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _null_tags(cls, value: Any) -> Any:
        return [] if value is None else value

    @model_validator(mode="before")
    @classmethod
    def _derive_category(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = dict(values)
        for key, category in (
            ("tool", PluginCategory.Tool),
            ("model", PluginCategory.Model),
            ("datasource", PluginCategory.Datasource),
            ("agent_strategy", PluginCategory.AgentStrategy),
            ("trigger", PluginCategory.Trigger),
        ):
            if values.get(key):
                values["category"] = category
                break
        else:
            values["category"] = PluginCategory.Extension
        return values


class PluginInstallation(BasePluginEntity):
    """An installation row (``installation/fetch/batch``)."""

    tenant_id: str
    endpoints_setups: int = 0
    endpoints_active: int = 0
    runtime_type: str
    source: PluginInstallationSource
    meta: dict[str, Any] = Field(default_factory=dict)
    plugin_id: str
    plugin_unique_identifier: str
    version: str
    checksum: str
    declaration: PluginDeclaration

    @field_validator("meta", mode="before")
    @classmethod
    def _null_meta(cls, value: Any) -> Any:
        return {} if value is None else value


class PluginEntity(PluginInstallation):
    """One item of the ``list`` route."""

    name: str
    installation_id: str

    @model_validator(mode="after")
    def _attach_plugin_id(self) -> "PluginEntity":
        if self.declaration.tool is not None:
            self.declaration.tool.plugin_id = self.plugin_id
        return self


class MissingPluginDependency(DaemonModel):
    plugin_unique_identifier: str
    current_identifier: str | None = None


__all__ = [
    "PluginInstallationSource",
    "PluginCategory",
    "PluginResourceRequirements",
    "PluginRunner",
    "PluginDeclaration",
    "PluginDeclarationPlugins",
    "PluginDeclarationMeta",
    "PluginInstallation",
    "PluginEntity",
    "MissingPluginDependency",
]
