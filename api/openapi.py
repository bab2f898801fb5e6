"""The OpenAPI schema, sharpened to say exactly which requests the API accepts.

FastAPI's schema says "a string" where the API takes less: no NUL or lone surrogate
anywhere (api.text_guard refuses them), and in the alert list's `transformer` and `class`
only what the fleet has. A client, or a test generating requests from the schema, can
then tell a good request from a bad one without trying it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.text_guard import STORABLE_PATTERN
from meterguard.model import MeterRegistry

#: Keywords that already say which strings are taken.
_EXACT = ("pattern", "enum", "const", "format")
_NESTED_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_NESTED = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def _storable(schema: Any, components: dict[str, Any], seen: set[str]) -> None:
    """Give every free string in a request schema the pattern of storable text."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen and name in components:
            seen.add(name)
            _storable(components[name], components, seen)
        return
    if schema.get("type") == "string" and not any(k in schema for k in _EXACT):
        schema["pattern"] = STORABLE_PATTERN
    for key in _NESTED_LISTS:
        for sub in schema.get(key, []):
            _storable(sub, components, seen)
    for key in _NESTED:
        _storable(schema.get(key), components, seen)
    for sub in schema.get("properties", {}).values():
        _storable(sub, components, seen)


#: What a regex must escape to mean the character itself (in Python's and Rust's syntax).
_SPECIAL = set("\\.^$|?*+()[]{}-")


def _any_case(text: str) -> str:
    """Return a regex that matches text whatever the case of its letters."""
    out = []
    for char in text:
        lower, upper = char.lower(), char.upper()
        if lower != upper and len(lower) == len(upper) == 1:
            out.append(f"[{lower}{upper}]")
        else:
            out.append(f"\\{char}" if char in _SPECIAL else char)
    return "".join(out)


def _one_of(values: list[str], description: str, any_case: bool = False) -> dict[str, Any]:
    """Return the schema of a parameter that takes one of the values (none: no value)."""
    if not values:
        return {"not": {}, "description": f"{description} (the fleet has none)"}
    if not any_case:
        return {"type": "string", "enum": values, "description": description}
    choices = "|".join(_any_case(v) for v in values)
    return {"type": "string", "pattern": f"^(?:{choices})$", "description": description}


def openapi_schema(app: FastAPI, registry: MeterRegistry) -> dict[str, Any]:
    """Return the app's OpenAPI schema with its request strings made exact."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                _storable(parameter.get("schema"), components, seen)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                _storable(content.get("schema"), components, seen)
    listing = schema.get("paths", {}).get("/api/alerts", {}).get("get", {})
    # As long as the parameters' own limits allow (200 and 100 characters).
    transformers = sorted(
        {t for m in registry if (t := m.transformer) is not None and len(t) <= 200}
    )
    classes = sorted({c for c in (m.customer_class or "" for m in registry) if len(c) <= 100})
    for parameter in listing.get("parameters", []):
        if parameter.get("in") != "query":
            continue
        if parameter["name"] == "transformer":
            parameter["schema"] = _one_of(transformers, "A transformer of the fleet")
        elif parameter["name"] == "class":
            parameter["schema"] = _one_of(classes, "A customer class of the fleet, any case", True)
    return schema
