"""Casting and validation of tool invocation parameters against the tool's declaration.

Owns: ``cast_tool_parameters``: fills declared defaults, checks required parameters, casts each value by its
declared type (string, secret-input, number with min/max, boolean, select against its options, file, files,
...) and reports every problem at once in a ``ToolParameterValidationError``.
Must not: send requests; the client calls this before opening the invoke stream.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .entities.tool import ToolEntity, ToolParameter
from .errors import ToolParameterValidationError

_TRUE_TEXT = {"true", "yes", "y", "1", "on"}
_FALSE_TEXT = {"false", "no", "n", "0", "off"}


class _CastError(ValueError):
    pass


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cast_text(parameter: ToolParameter, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return str(value)
    raise _CastError(f"expects a string, got {type(value).__name__}")


def _cast_number(parameter: ToolParameter, value: Any) -> int | float:
    number: int | float
    if _is_number(value):
        number = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise _CastError(f"expects a number, got {value!r}") from None
    else:
        raise _CastError(f"expects a number, got {value!r}")
    if isinstance(number, float) and not math.isfinite(number):
        raise _CastError(f"expects a finite number, got {value!r}")
    if parameter.min is not None and number < parameter.min:
        raise _CastError(f"must be >= {parameter.min}, got {number}")
    if parameter.max is not None and number > parameter.max:
        raise _CastError(f"must be <= {parameter.max}, got {number}")
    return number


def _cast_boolean(parameter: ToolParameter, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
    raise _CastError(f"expects a boolean (true/false), got {value!r}")


def _cast_select(parameter: ToolParameter, value: Any) -> str | list[str]:
    allowed = [option.value for option in parameter.options]

    def one(item: Any) -> str:
        text = _cast_text(parameter, item)
        if allowed and text not in allowed:
            raise _CastError(f"value {text!r} is not one of the options {allowed}")
        return text

    if parameter.multiple:
        items = value if isinstance(value, list) else [value]
        return [one(item) for item in items]
    if isinstance(value, list):
        raise _CastError("expects a single option, got a list")
    return one(value)


def _check_file_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _CastError(f"expects a file object (mapping), got {type(value).__name__}")
    return dict(value)


def _cast_file(parameter: ToolParameter, value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        if len(value) != 1:
            raise _CastError(f"accepts exactly one file, got {len(value)}")
        value = value[0]
    return _check_file_object(value)


def _cast_files(parameter: ToolParameter, value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [_check_file_object(item) for item in items]


def _cast_array(parameter: ToolParameter, value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    raise _CastError(f"expects an array, got {value!r}")


def _cast_object(parameter: ToolParameter, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    raise _CastError(f"expects an object, got {value!r}")


def _cast_selector(parameter: ToolParameter, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _CastError(f"expects a mapping, got {type(value).__name__}")
    return dict(value)


_CASTERS = {
    "string": _cast_text,
    "secret-input": _cast_text,
    "text-input": _cast_text,
    "dynamic-select": _cast_text,
    "checkbox": _cast_text,
    "number": _cast_number,
    "boolean": _cast_boolean,
    "select": _cast_select,
    "file": _cast_file,
    "files": _cast_files,
    "system-files": _cast_files,
    "array": _cast_array,
    "object": _cast_object,
    "app-selector": _cast_selector,
    "model-selector": _cast_selector,
}


def cast_parameter_value(parameter: ToolParameter, value: Any) -> Any:
    """Cast one value by its declared type; raise ``ValueError`` with a readable reason on mismatch."""
    caster = _CASTERS.get(parameter.type)
    if caster is None:
        return value
    try:
        return caster(parameter, value)
    except _CastError as exc:
        raise ValueError(f"parameter {parameter.name!r} ({parameter.type}) {exc}") from None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "") or (isinstance(value, list) and not value)


def cast_tool_parameters(tool: ToolEntity, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Return the parameters cast by ``tool``'s declaration.

    Declared parameters that are missing take their declared default; required ones without a default are
    an error. Parameters the declaration does not know are passed through unchanged (runtime parameters may
    add more). Every problem is collected and raised together as ``ToolParameterValidationError``.
    """
    if not isinstance(parameters, Mapping):
        raise ToolParameterValidationError(tool.identity.name, ["tool_parameters must be a mapping"])
    result: dict[str, Any] = dict(parameters)
    problems: list[str] = []
    for parameter in tool.parameters:
        value = parameters.get(parameter.name)
        if _is_missing(value):
            if not _is_missing(parameter.default):
                value = parameter.default
            elif parameter.required:
                problems.append(f"parameter {parameter.name!r} is required")
                continue
            else:
                continue
        try:
            result[parameter.name] = cast_parameter_value(parameter, value)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ToolParameterValidationError(tool.identity.name, problems)
    return result


__all__ = ["cast_parameter_value", "cast_tool_parameters"]
