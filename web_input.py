"""Reading request input: JSON bodies, forms and fields, each error an ``errors.InputError``
naming its field, which the app's one handler answers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import abort, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from errors import InputError
from prompt_enhancer import clean_text

MAX_FIELD_CHARS = 2000
MAX_JSON_DEPTH = 32


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def json_body(required: bool = True) -> Any:
    """The request's JSON body; malformed, too deep or not UTF-8 is a 400 naming the body."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    data = request.get_data(cache=True)
    if limit is not None and request.content_length is None and len(data) >= limit:
        abort(413)  # a chunked body is cut at the limit without an error: it was too large
    if not data.strip():
        if required:
            raise InputError("body", "Send a JSON object (Content-Type: application/json) or a multipart form.")
        return {}
    if not request.is_json:
        raise InputError("body", "Send a JSON object (Content-Type: application/json) or a multipart form.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("body", "The body is not UTF-8 text.") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise InputError("body", f"The JSON is nested too deeply (at most {MAX_JSON_DEPTH} levels).")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise InputError("body", "The body is not valid JSON.") from None


def form_fields() -> tuple[dict, Any]:
    """The form's fields and files; too many parts is said as such, not as 'too large'."""
    try:
        return request.form.to_dict(), request.files
    except RequestEntityTooLarge:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and limit is not None and request.content_length <= limit:
            raise InputError("body", f"The form has too many parts (at most {request.max_form_parts}).") from None
        raise


def text_field(fields: dict, name: str, default: str, limit: int = MAX_FIELD_CHARS) -> str:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if not isinstance(value, str):
        raise InputError(name, f"{name} must be text.")
    if len(value) > limit:
        raise InputError(name, f"{name} is too long ({len(value)} characters; at most {limit}).")
    try:
        value = clean_text(value)
    except ValueError as error:
        raise InputError(name, f"{name} {error}.") from None
    return value.strip() or default


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def int_field(fields: dict, name: str, low: int, high: int, default: int | None) -> int | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise InputError(name, f"{name} must be a whole number from {low} to {high}.")
    # int() also reads '١٢' and '1_000' as numbers: a field takes ASCII digits only.
    if isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value.strip()):
        raise InputError(name, f"{name} must be a whole number from {low} to {high}.")
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise InputError(name, f"{name} must be a whole number from {low} to {high}.") from None
    if not low <= number <= high:
        raise InputError(name, f"{name} must be from {low} to {high}, got {number}.")
    return number


def bool_field(fields: dict, name: str, default: bool) -> bool:
    value = fields.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise InputError(name, f"{name} must be true or false.")


def choice_field(fields: dict, name: str, choices, default: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise InputError(name, f"{name} must be one of: {', '.join(choices)}.")
    return value.strip().lower()


def json_list_field(fields: dict, name: str, items: str) -> Any:
    """A field that holds a JSON list: as a JSON body sent it, or parsed from the text a form
    sends (blank: None). ``items`` describes an item for the error ({"name", "traits"})."""
    value = fields.get(name)
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        parsed = json.loads(value) if json_depth(value) <= MAX_JSON_DEPTH else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, list):
        raise InputError(name, f"{name} must be a JSON list of {items}.")
    return parsed
