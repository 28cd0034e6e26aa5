"""Validation of ``POST /v1/responses`` bodies and the API's error envelope.

Owns :class:`ApiError` (status + OpenAI-style envelope) and :func:`validate_create`, which
checks a create body against the contract (``text.format`` included) before anything is
reserved or billed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ApiError", "model_status", "validate_create", "validate_idempotency_key"]

COMPLETION_WINDOWS = ("asap", "standard")
_ROLES = frozenset(("user", "system", "developer", "assistant"))
_TEXT_PARTS = frozenset(("input_text", "output_text", "text"))
_UNSUPPORTED = ("previous_response_id", "conversation", "prompt")
_FORMATS = ("text", "json_schema")
_MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error answer: HTTP status plus the ``{"error": {...}}`` envelope fields.

    Attributes:
        status: HTTP status code.
        message: Human-readable message (never contains the caller's key).
        type: Error type, e.g. ``invalid_request_error``.
        code: Machine-readable code, or None.
        param: The offending request field, or None.
    """

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None

    def envelope(self) -> dict[str, Any]:
        """The JSON body of this error.

        Returns:
            ``{"error": {"message", "type", "param", "code"}}``.
        """
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_message(i: int, message: Any) -> ApiError | None:
    where = f"input[{i}]"
    if not isinstance(message, dict):
        return _invalid(f"{where} must be a message object with 'role' and 'content'.", where)
    if message.get("type", "message") != "message":
        return _invalid(f"{where}: only message items are supported.", f"{where}.type")
    if message.get("role") not in _ROLES:
        roles = ", ".join(sorted(_ROLES))
        return _invalid(f"{where}.role must be one of: {roles}.", f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return None
    if not isinstance(content, list) or not content:
        return _invalid(
            f"{where}.content must be a string or a non-empty list of content parts.",
            f"{where}.content",
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
            return _invalid(
                f"{where}.content[{j}]: only text content parts are supported.",
                f"{where}.content[{j}]",
            )
        if not isinstance(part.get("text"), str):
            return _invalid(
                f"{where}.content[{j}].text must be a string.", f"{where}.content[{j}].text"
            )
    return None


def _check_input(value: Any) -> ApiError | None:
    if isinstance(value, str):
        return None if value else _invalid("'input' must not be empty.", "input")
    if not isinstance(value, list) or not value:
        return _invalid("'input' must be a non-empty string or a list of messages.", "input")
    for i, message in enumerate(value):
        error = _check_message(i, message)
        if error is not None:
            return error
    return None


def _check_metadata(value: Any, model: str) -> ApiError | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return _invalid("'metadata' must be an object whose values are strings.", "metadata")
    window = value.get("completion_window")
    if window is not None and window not in COMPLETION_WINDOWS:
        return _invalid(
            f"completion_window {window!r} is not supported by model {model!r}; "
            f"supported windows: {', '.join(COMPLETION_WINDOWS)}.",
            "metadata.completion_window",
            "unsupported_completion_window",
        )
    return None


def _check_options(body: Mapping[str, Any]) -> ApiError | None:
    if body.get("stream") not in (None, False):
        return _invalid("Streaming is not supported on the Responses API.", "stream", "unsupported")
    if "store" in body and body["store"] is not True:
        return _invalid("'store' must be true; no other value is accepted.", "store", "unsupported")
    if not isinstance(body.get("background", False), bool):
        return _invalid("'background' must be a boolean.", "background")
    tokens = body.get("max_output_tokens")
    if tokens is not None and not (isinstance(tokens, int) and not isinstance(tokens, bool)):
        return _invalid("'max_output_tokens' must be an integer ≥ 1 or null.", "max_output_tokens")
    if tokens is not None and tokens < 1:
        return _invalid("'max_output_tokens' must be an integer ≥ 1 or null.", "max_output_tokens")
    for name, high in (("temperature", 2.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is not None and not (_is_number(value) and 0.0 <= value <= high):
            return _invalid(f"'{name}' must be a number between 0 and {high:g}, or null.", name)
    if not isinstance(body.get("instructions", ""), str | None):
        return _invalid("'instructions' must be a string.", "instructions")
    if body.get("truncation", "disabled") not in ("disabled", None):
        return _invalid("'truncation' only accepts 'disabled'.", "truncation", "unsupported")
    for name in _UNSUPPORTED:
        if body.get(name) is not None:
            return _invalid(f"'{name}' is not supported.", name, "unsupported")
    return None


def _check_text(value: Any) -> ApiError | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return _invalid("'text' must be an object.", "text")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in _FORMATS:
        return _invalid(
            "'text.format.type' must be one of: " + ", ".join(_FORMATS) + ".", "text.format.type"
        )
    if fmt["type"] != "json_schema":
        return None
    if "schema" not in fmt:
        return _invalid(
            "'text.format.schema' is required when the format is json_schema.",
            "text.format.schema",
            "missing_required",
        )
    if not isinstance(fmt["schema"], dict):
        return _invalid("'text.format.schema' must be a JSON schema object.", "text.format.schema")
    if not isinstance(fmt.get("name", ""), str):
        return _invalid("'text.format.name' must be a string.", "text.format.name")
    if not isinstance(fmt.get("strict", False), bool):
        return _invalid("'text.format.strict' must be a boolean.", "text.format.strict")
    return None


def validate_create(body: Any, models: tuple[str, ...]) -> ApiError | None:
    """Check a create body against the contract.

    Args:
        body: The decoded JSON body.
        models: The model ids the server serves.

    Returns:
        The error to answer with, or None when the body is acceptable.
    """
    if not isinstance(body, dict):
        return _invalid("The request body must be a JSON object.", None, "invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _invalid("'model' is required and must be a string.", "model", "missing_required")
    if model not in models:
        return _invalid(
            f"The model {model!r} does not exist or you do not have access to it.",
            "model",
            "model_not_found",
        )
    if "input" not in body:
        return _invalid("'input' is required.", "input", "missing_required")
    return (
        _check_input(body["input"])
        or _check_metadata(body.get("metadata"), model)
        or _check_options(body)
        or _check_text(body.get("text"))
    )


def validate_idempotency_key(key: str) -> ApiError | None:
    """Check an ``Idempotency-Key`` header value.

    Args:
        key: The header value.

    Returns:
        The error to answer with, or None when the key is acceptable (1–255 characters).
    """
    if not key or len(key) > _MAX_KEY:
        return _invalid(
            f"The Idempotency-Key header must be 1 to {_MAX_KEY} characters long.",
            None,
            "invalid_idempotency_key",
        )
    return None


def model_status(error: ApiError | None, status: int) -> ApiError | None:
    """An error as answered: an unknown model's ``model_not_found`` gets ``status`` (400/404).

    Args:
        error: The validation error, or None.
        status: The configured status of an unknown model's answer.
    """
    if error is None or error.code != "model_not_found" or error.status == status:
        return error
    return ApiError(status, error.message, error.type, error.code, error.param)
