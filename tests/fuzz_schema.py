"""Hypothesis strategies from the tools' published JSON input schemas: valid arguments, and
arguments with exactly one field made invalid (which field, to find it in the error).

Covers the schema words the tools use (type, enum, minimum, maximum, exclusiveMinimum,
minLength, maxLength, pattern, items, minItems, maxItems, anyOf, properties, required).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

Schema = dict[str, Any]
LONGEST_LIST = 5  # longer valid lists only cost time
# JSON carries no NaN or infinity (a client would send them as null).
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)


def valid(schema: Schema) -> st.SearchStrategy[Any]:
    """Values the schema accepts."""
    if "anyOf" in schema:
        return st.one_of([valid(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type", "string")
    if isinstance(kinds, list):
        return st.one_of([valid({**schema, "type": kind}) for kind in kinds])
    return _VALID[kinds](schema)


def _string(schema: Schema) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 64), 300)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda s: low <= len(s) <= high
        )
    return st.text(min_size=low, max_size=high)


def _integer(schema: Schema) -> st.SearchStrategy[int]:
    low = schema.get("minimum")
    if "exclusiveMinimum" in schema:
        low = math.floor(schema["exclusiveMinimum"]) + 1
    return st.integers(low, schema.get("maximum"))


def _number(schema: Schema) -> st.SearchStrategy[float]:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    return st.floats(
        low,
        schema.get("maximum"),
        exclude_min="exclusiveMinimum" in schema,
        allow_nan=False,
        allow_infinity=False,
    )


def _array(schema: Schema) -> st.SearchStrategy[list[Any]]:
    low = schema.get("minItems", 0)
    high = min(schema.get("maxItems", LONGEST_LIST), max(low, LONGEST_LIST))
    return st.lists(valid(schema.get("items", {})), min_size=low, max_size=high)


def _object(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Schema] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    return st.fixed_dictionaries(
        {name: valid(properties[name]) for name in sorted(required)},
        optional={name: valid(p) for name, p in properties.items() if name not in required},
    )


_VALID: dict[str, Any] = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": lambda _: st.booleans(),
    "null": lambda _: st.none(),
    "array": _array,
    "object": _object,
}


def invalid_value(schema: Schema) -> st.SearchStrategy[Any]:
    """Values the schema refuses: another type, or past one of its limits."""
    kinds = schema.get("type", "string")
    kinds = set(kinds if isinstance(kinds, list) else [kinds])
    if "anyOf" in schema:
        kinds = {k for option in schema["anyOf"] for k in _types(option)}
    options = [
        JSON_SCALARS.filter(lambda v: not _has_type(v, kinds)),
        st.lists(st.integers(), max_size=2).filter(lambda _: "array" not in kinds),
    ]
    if "enum" in schema:
        options.append(st.text(max_size=20).filter(lambda v: v not in schema["enum"]))
    if "minimum" in schema:
        options.append(st.integers(max_value=math.ceil(schema["minimum"]) - 1))
    if "exclusiveMinimum" in schema:
        options.append(st.integers(max_value=math.floor(schema["exclusiveMinimum"])))
    if "maximum" in schema:
        options.append(st.integers(min_value=math.floor(schema["maximum"]) + 1))
    if "maxLength" in schema:
        options.append(st.text(min_size=schema["maxLength"] + 1, max_size=schema["maxLength"] + 3))
    if schema.get("minLength", 0) > 0:
        options.append(st.just(""))
    if "pattern" in schema:
        options.append(st.sampled_from(["has space", "tab\there", "new\nline"]))
    if "maxItems" in schema:
        item = valid(schema.get("items", {}))
        size = schema["maxItems"] + 1
        options.append(st.lists(item, min_size=size, max_size=size))
    return st.one_of(options)


def _types(schema: Schema) -> set[str]:
    kinds = schema.get("type", "string")
    return set(kinds if isinstance(kinds, list) else [kinds])


def _has_type(value: Any, kinds: set[str]) -> bool:
    if value is None:
        return "null" in kinds
    if isinstance(value, bool):
        return "boolean" in kinds
    if isinstance(value, int):
        return bool(kinds & {"integer", "number"})
    if isinstance(value, float):
        return "number" in kinds or ("integer" in kinds and value.is_integer())
    return True


@st.composite
def one_field_wrong(
    draw: st.DrawFn, schema: Schema, base: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """`base` (arguments the tool accepts) with one field made invalid; returns them and that
    field's name. (Random valid arguments would not do: the schema cannot say that, say, a
    job id must exist, so a refusal might name another field.)"""
    properties: dict[str, Schema] = schema["properties"]
    name = draw(st.sampled_from(sorted(properties)))
    return {**base, name: draw(invalid_value(properties[name]))}, name
