"""The code examples and method signatures of ``python/README.md``, read from the file at test time.

The README's examples are the package specification's examples, copied unchanged (the specification is the
README its users read); its method list is the specification's list of signatures. Owns: finding the
``<!-- example: NAME -->`` blocks, replacing the few values that must point at the test daemon (URL, key,
package file, tenant, tool provider, tool) and nothing else, and parsing the ``name(params) -> Return``
lines of the method list.
Must not: change anything else in an example: a replacement that does not occur is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# The placeholder values of the examples (the specification's own spelling).
EXAMPLE_URL = "http://localhost:5002"
EXAMPLE_KEY = "plugin-api-key"
EXAMPLE_PACKAGE = "my_plugin.difypkg"
EXAMPLE_PROVIDER = "organization/plugin_name/provider_name"
EXAMPLE_CLI_PROVIDER = "plugin_id/provider_name"
EXAMPLE_CLI_TOOL = "tool_name"

_BLOCK = re.compile(r"<!-- example: ([a-z0-9-]+) -->\n```([a-z]+)\n(.*?)\n```", re.S)
_FENCE = re.compile(r"^```([a-z]*)$", re.M)
_SIGNATURE = re.compile(r"^- `([a-z_]+)\((.*)\) -> (.+)`$", re.M)


@dataclass(frozen=True)
class Example:
    name: str
    language: str
    code: str
    line: int

    def substituted(self, replacements: dict[str, str]) -> str:
        """The code with each placeholder replaced; every placeholder given must occur in it."""
        code = self.code
        for old, new in replacements.items():
            assert old in code, f"example {self.name!r} no longer contains {old!r}"
            code = code.replace(old, new)
        return code


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def examples() -> dict[str, Example]:
    """Every marked block, by name, in README order."""
    text = readme_text()
    found: dict[str, Example] = {}
    for match in _BLOCK.finditer(text):
        name = match.group(1)
        assert name not in found, f"two README examples are named {name!r}"
        found[name] = Example(name, match.group(2), match.group(3) + "\n", text.count("\n", 0, match.start(3)) + 1)
    return found


def unmarked_code_blocks() -> list[int]:
    """Lines of python / bash / json blocks that have no ``example:`` marker (there must be none)."""
    text = readme_text()
    marked = {e.line for e in examples().values()}
    lines: list[int] = []
    opening = True
    for match in _FENCE.finditer(text):
        if opening and match.group(1) in ("python", "bash", "json"):
            line = text.count("\n", 0, match.end()) + 2
            if line not in marked:
                lines.append(line)
        opening = not opening
    return lines


@dataclass(frozen=True)
class Signature:
    name: str
    parameters: list[str]
    returns: str


def signatures() -> list[Signature]:
    """The method list: each parameter by name (annotations and defaults dropped)."""
    result = []
    for match in _SIGNATURE.finditer(readme_text()):
        parameters = [p.split(":")[0].split("=")[0].strip() for p in match.group(2).split(",") if p.strip()]
        result.append(Signature(match.group(1), parameters, match.group(3).strip()))
    return result
