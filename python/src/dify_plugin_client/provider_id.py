"""Parsing of provider ids such as ``org/plugin/provider`` or ``plugin_id/provider``.

Owns: ``GenericProviderID``. A two-part id ``plugin/provider`` is read as ``langgenius/plugin/provider``
like Dify does; a one-part id ``provider`` as ``langgenius/provider/provider``.
Must not: do I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART = re.compile(r"^[a-z0-9_-]{1,255}$", re.IGNORECASE)


@dataclass(frozen=True)
class GenericProviderID:
    organization: str
    plugin_name: str
    provider_name: str

    @classmethod
    def parse(cls, value: str) -> "GenericProviderID":
        if not isinstance(value, str) or not value:
            raise ValueError("provider id must be a non-empty string like 'org/plugin/provider'")
        parts = value.split("/")
        if len(parts) == 1:
            parts = ["langgenius", parts[0], parts[0]]
        elif len(parts) == 2:
            parts = ["langgenius", *parts]
        if len(parts) != 3 or not all(_PART.match(p) for p in parts):
            raise ValueError(f"invalid provider id {value!r}: expected 'org/plugin/provider'")
        return cls(parts[0], parts[1], parts[2])

    @property
    def plugin_id(self) -> str:
        return f"{self.organization}/{self.plugin_name}"

    def __str__(self) -> str:
        return f"{self.organization}/{self.plugin_name}/{self.provider_name}"


__all__ = ["GenericProviderID"]
