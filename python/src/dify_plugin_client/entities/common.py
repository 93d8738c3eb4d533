"""Shared building blocks of the response models: the lenient base model and localized text.

Owns: ``DaemonModel`` (keeps unknown fields so newer daemons do not break parsing) and ``I18nObject``.
Must not: contain route-specific models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DaemonModel(BaseModel):
    """Base of every response model: unknown fields are kept (``model_extra``), never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())


class I18nObject(DaemonModel):
    """Localized text; missing languages fall back to ``en_US`` like Dify does."""

    en_US: str = ""
    zh_Hans: str | None = None
    ja_JP: str | None = None
    pt_BR: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_plain_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"en_US": value}
        return value

    @model_validator(mode="after")
    def _fill_missing_languages(self) -> "I18nObject":
        for language in ("zh_Hans", "ja_JP", "pt_BR"):
            if not getattr(self, language):
                setattr(self, language, self.en_US)
        return self


class BasePluginEntity(DaemonModel):
    """A database row as the daemon renders it: ``id``, ``created_at``, ``updated_at``."""

    id: str
    created_at: datetime
    updated_at: datetime


def i18n_default() -> I18nObject:
    return I18nObject()


__all__ = ["DaemonModel", "I18nObject", "BasePluginEntity", "Field", "i18n_default"]
