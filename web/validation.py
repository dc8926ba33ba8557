"""Validation of ``POST /v1/jobs`` bodies. Errors point at the offending field (JSON Pointer)."""

from __future__ import annotations

import uuid

from web.problems import Problem

MAX_ID_LENGTH = 256
MAX_REPORTED_ERRORS = 50


def _error(pointer: str, code: str, detail: str) -> dict:
    return {"pointer": pointer, "code": code, "detail": detail}


def validate_job_body(body: object, max_products: int, max_text_length: int) -> list[dict]:
    """Return the products to queue (``[{"id": ..., "text": ...}]``) or raise ``Problem``.

    Rules: the body is an object with ``products``, an array of 1..``max_products`` objects;
    each has a non-empty string ``text`` of at most ``max_text_length`` characters and an
    optional ``id`` (string of at most 256 characters, or integer). Other fields are ignored.
    """
    if not isinstance(body, dict):
        raise Problem(
            "validation-error",
            "the request body must be a JSON object",
            errors=[_error("", "type", "must be an object with a 'products' array")],
        )
    if "products" not in body:
        raise Problem(
            "validation-error",
            "'products' is required",
            errors=[_error("/products", "required", "is required")],
        )
    products = body["products"]
    if not isinstance(products, list):
        raise Problem(
            "validation-error",
            "'products' must be an array",
            errors=[_error("/products", "type", "must be an array of product objects")],
        )
    if not products:
        raise Problem(
            "validation-error",
            "'products' must contain at least one product",
            errors=[_error("/products", "empty", "must contain at least 1 product")],
        )
    if len(products) > max_products:
        raise Problem(
            "too-many-products",
            f"{len(products)} products in one job; at most {max_products} are allowed",
            errors=[_error("/products", "too_many", f"has {len(products)} items; at most {max_products}")],
            max_products=max_products,
        )
    errors: list[dict] = []
    cleaned: list[dict] = []
    for i, product in enumerate(products):
        where = f"/products/{i}"
        if not isinstance(product, dict):
            errors.append(_error(where, "type", "must be an object with a 'text' string"))
            continue
        text = product.get("text")
        if "text" not in product or text is None:
            errors.append(_error(f"{where}/text", "required", "is required"))
        elif not isinstance(text, str):
            errors.append(_error(f"{where}/text", "type", f"must be a string, not {_json_type(text)}"))
        elif not text.strip():
            errors.append(_error(f"{where}/text", "empty", "must not be empty"))
        elif len(text) > max_text_length:
            errors.append(
                _error(
                    f"{where}/text",
                    "too_long",
                    f"is {len(text)} characters; at most {max_text_length} are allowed",
                )
            )
        pid = product.get("id")
        if pid is not None:
            if isinstance(pid, bool) or not isinstance(pid, str | int):
                errors.append(_error(f"{where}/id", "type", f"must be a string or integer, not {_json_type(pid)}"))
            elif isinstance(pid, str) and len(pid) > MAX_ID_LENGTH:
                errors.append(_error(f"{where}/id", "too_long", f"is longer than {MAX_ID_LENGTH} characters"))
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
        cleaned.append({"id": pid, "text": text})
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Problem(
            "validation-error",
            f"{first['pointer']} {first['detail']}{more}",
            errors=errors,
        )
    return cleaned


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def canonical_uuid(value: str, not_found: str, noun: str) -> str:
    """``value`` as a canonical UUID string, else the ``not_found`` problem (404: an id that cannot
    exist answers like one that does not)."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise Problem(not_found, f"'{value[:80]}' is not a {noun} id (a UUID)") from None
    if str(parsed) != value.lower():
        raise Problem(not_found, f"'{value[:80]}' is not a {noun} id in canonical UUID form")
    return str(parsed)
