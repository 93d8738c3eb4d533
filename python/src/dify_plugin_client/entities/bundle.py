"""Dependencies listed by an uploaded bundle (``install/upload/bundle``, docs/http.md §7.2).

Owns: ``PluginBundleDependency`` with a ``value`` model chosen by ``type``.
Must not: do I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Union

from pydantic import model_validator

from .common import DaemonModel
from .plugin import PluginDeclaration


class BundleDependencyType(StrEnum):
    Github = "github"
    Marketplace = "marketplace"
    Package = "package"


class GithubBundleDependency(DaemonModel):
    repo_address: str
    repo: str
    release: str
    packages: str


class MarketplaceBundleDependency(DaemonModel):
    organization: str
    plugin: str
    version: str


class PackageBundleDependency(DaemonModel):
    unique_identifier: str
    manifest: PluginDeclaration


_VALUE_BY_TYPE: dict[str, type[DaemonModel]] = {
    "github": GithubBundleDependency,
    "marketplace": MarketplaceBundleDependency,
    "package": PackageBundleDependency,
}


class PluginBundleDependency(DaemonModel):
    Type: ClassVar[Any] = BundleDependencyType
    Github: ClassVar[Any] = GithubBundleDependency
    Marketplace: ClassVar[Any] = MarketplaceBundleDependency
    Package: ClassVar[Any] = PackageBundleDependency

    type: BundleDependencyType
    value: Union[GithubBundleDependency, MarketplaceBundleDependency, PackageBundleDependency]

    @model_validator(mode="before")
    @classmethod
    def _value_by_type(cls, values: Any) -> Any:
        if isinstance(values, dict):
            model = _VALUE_BY_TYPE.get(str(values.get("type")))
            value = values.get("value")
            if model is not None and isinstance(value, dict):
                return {**values, "value": model.model_validate(value)}
        return values


__all__ = [
    "BundleDependencyType",
    "GithubBundleDependency",
    "MarketplaceBundleDependency",
    "PackageBundleDependency",
    "PluginBundleDependency",
]
