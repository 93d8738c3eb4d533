"""Resolution of JSON-Schema ``$ref``s inside tool schemas (``output_schema``, ``input_schema``).

Owns: ``resolve_schema_refs``. Local refs (``#/...`` JSON pointers) resolve against the schema's own root;
Dify's well-known schema URLs (``https://dify.ai/schemas/v1/<name>.json``) resolve through a registry
(``DIFY_SCHEMA_REGISTRY`` by default, extendable by the caller). Unknown refs are left as they are;
cycles stop expanding after ``max_depth`` and keep the ``$ref``.
Must not: fetch anything over the network.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Dify's built-in file object, as plugins reference it from output schemas.
_FILE_SCHEMA: dict[str, Any] = {
    "title": "File",
    "description": "A file produced or consumed by a tool",
    "type": "object",
    "properties": {
        "dify_builtin_type": {"type": "string", "enum": ["File"]},
        "name": {"type": "string"},
        "size": {"type": "number"},
        "type": {"type": "string"},
        "mime_type": {"type": "string"},
        "transfer_method": {"type": "string"},
        "url": {"type": "string"},
        "related_id": {"type": "string"},
        "extension": {"type": "string"},
    },
    "required": ["name"],
}

DIFY_SCHEMA_REGISTRY: dict[str, dict[str, Any]] = {
    "https://dify.ai/schemas/v1/file.json": _FILE_SCHEMA,
}


def _follow_pointer(root: Any, pointer: str) -> Any:
    """Follow a JSON pointer (without the leading ``#``); raise ``KeyError`` when it does not exist."""
    node = root
    if pointer in ("", "/"):
        return node
    for raw_part in pointer.lstrip("/").split("/"):
        part = raw_part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(pointer)
    return node


def resolve_schema_refs(
    schema: Any,
    registry: Mapping[str, Mapping[str, Any]] | None = None,
    max_depth: int = 16,
) -> Any:
    """Return a copy of ``schema`` with every resolvable ``$ref`` replaced by the schema it names.

    Sibling keywords next to a ``$ref`` (e.g. ``description``) are kept and win over the referenced ones.
    """
    known = dict(DIFY_SCHEMA_REGISTRY)
    if registry:
        known.update({k: dict(v) for k, v in registry.items()})
    root = schema

    def lookup(ref: str) -> Any:
        if ref.startswith("#"):
            return _follow_pointer(root, ref[1:])
        base, _, fragment = ref.partition("#")
        target = known.get(base)
        if target is None:
            raise KeyError(ref)
        return _follow_pointer(target, fragment) if fragment else target

    def walk(node: Any, depth: int, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, depth, expanding) for item in node]
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and depth < max_depth and ref not in expanding:
            try:
                target = copy.deepcopy(lookup(ref))
            except KeyError:
                target = None
            if isinstance(target, Mapping):
                resolved = walk(target, depth + 1, expanding + (ref,))
                siblings = {k: walk(v, depth, expanding) for k, v in node.items() if k != "$ref"}
                return {**resolved, **siblings}
        return {k: walk(v, depth, expanding) for k, v in node.items()}

    return walk(schema, 0, ())


__all__ = ["DIFY_SCHEMA_REGISTRY", "resolve_schema_refs"]
