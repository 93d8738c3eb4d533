"""Payloads shaped like the daemon's JSON (docs/http.md §4.2, §7), used by the fixture server scenarios."""

from __future__ import annotations

import copy
from typing import Any

TENANT = "0d4f3c6a-9a47-4b2b-9f0e-4f4f4b3a2c11"
CHECKSUM = "f47ca91dfa51d374e6dc4fa3b9b6839396e1e5bff0d6e846cc940c828f8f131b"
IDENTIFIER = f"acme/searcher:0.0.1@{CHECKSUM}"
IDENTIFIER_V2 = f"acme/searcher:0.0.2@{'a' * 64}"
TIMESTAMP = "2025-01-02T03:04:05.123456789Z"


def i18n(text: str) -> dict[str, str]:
    return {"en_US": text, "zh_Hans": text, "ja_JP": text, "pt_BR": text}


def parameter(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "name": name,
        "label": i18n(name.title()),
        "human_description": i18n(f"the {name}"),
        "type": kind,
        "form": "llm",
        "llm_description": f"the {name}",
        "required": False,
        "default": None,
        "min": None,
        "max": None,
        "options": [],
    }
    value.update(extra)
    return value


def tool_declaration() -> dict[str, Any]:
    """The ``tool`` part of a declaration: provider ``search`` with tools ``search`` and ``typed``."""
    return {
        "identity": {
            "author": "acme",
            "name": "search",
            "label": i18n("Search"),
            "description": i18n("Search things"),
            "icon": "3f1c0a.svg",
            "tags": ["search"],
        },
        "credentials_schema": [],
        "tools": [
            {
                "identity": {"author": "acme", "name": "search", "label": i18n("Search")},
                "description": {"human": i18n("Search the web"), "llm": "search the web"},
                "parameters": [parameter("query", "string", required=True)],
                "output_schema": {
                    "type": "object",
                    "properties": {
                        "file": {"$ref": "https://dify.ai/schemas/v1/file.json"},
                        "hits": {"type": "array", "items": {"$ref": "#/definitions/hit"}},
                    },
                    "definitions": {"hit": {"type": "object", "properties": {"title": {"type": "string"}}}},
                },
            },
            {
                "identity": {"author": "acme", "name": "typed", "label": i18n("Typed")},
                "description": {"human": i18n("Every parameter type"), "llm": "typed"},
                "parameters": [
                    parameter("text", "string", required=True),
                    parameter("count", "number", min=1, max=10, default=3),
                    parameter("flag", "boolean"),
                    parameter(
                        "mode",
                        "select",
                        options=[{"value": "fast", "label": i18n("Fast")}, {"value": "slow", "label": i18n("Slow")}],
                    ),
                    parameter("token", "secret-input"),
                    parameter("doc", "file"),
                    parameter("docs", "files"),
                ],
            },
        ],
    }


def declaration(version: str = "0.0.1") -> dict[str, Any]:
    return {
        "version": version,
        "type": "plugin",
        "author": "acme",
        "name": "searcher",
        "label": i18n("Searcher"),
        "description": i18n("A search plugin"),
        "icon": "3f1c0a.svg",
        "icon_dark": "",
        "created_at": TIMESTAMP,
        "tags": ["search"],
        "verified": False,
        "resource": {"memory": 268435456, "permission": {"tool": {"enabled": True}}},
        "plugins": {"tools": ["provider/search.yaml"], "models": [], "endpoints": [], "agent_strategies": [],
                    "datasources": [], "triggers": []},
        "meta": {"version": "0.0.1", "arch": ["amd64", "arm64"],
                 "runner": {"language": "python", "version": "3.12", "entrypoint": "main"},
                 "minimum_dify_version": None},
        "tool": tool_declaration(),
    }


def plugin_entity(index: int = 0, identifier: str = IDENTIFIER) -> dict[str, Any]:
    plugin_id, _, rest = identifier.partition(":")
    version, _, checksum = rest.partition("@")
    installation_id = f"0192a3b4-0000-7000-8000-{index:012d}"
    return {
        "id": installation_id,
        "name": plugin_id.split("/")[1],
        "plugin_id": plugin_id,
        "tenant_id": TENANT,
        "plugin_unique_identifier": identifier,
        "endpoints_active": 0,
        "endpoints_setups": 0,
        "installation_id": installation_id,
        "declaration": declaration(version),
        "runtime_type": "local",
        "version": version,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "source": "package",
        "checksum": checksum,
        "meta": {},
    }


def tool_provider_row() -> dict[str, Any]:
    return {
        "id": "0192a3b4-0000-7000-8000-00000000aaaa",
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "tenant_id": TENANT,
        "provider": "search",
        "plugin_unique_identifier": IDENTIFIER,
        "plugin_id": "acme/searcher",
        "declaration": copy.deepcopy(tool_declaration()),
    }


def install_task(status: str = "running", plugin_status: str = "running", message: str = "starting") -> dict[str, Any]:
    return {
        "id": "0192a3b4-0000-7000-8000-0000000000ff",
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "status": status,
        "tenant_id": TENANT,
        "total_plugins": 1,
        "completed_plugins": 1 if status == "success" else 0,
        "plugins": [
            {
                "plugin_unique_identifier": IDENTIFIER,
                "labels": i18n("Searcher"),
                "icon": "3f1c0a.svg",
                "icon_dark": "",
                "plugin_id": "acme/searcher",
                "status": plugin_status,
                "message": message,
                "source": "package",
            }
        ],
    }
