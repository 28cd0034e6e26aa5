"""Validation of ``POST /v1/responses`` bodies and the API's error envelope.

Owns :class:`ApiError` (status + OpenAI-style envelope) and :func:`validate_create`, which
checks a create body against the contract (``text.format`` included; strict schemas when the
server enforces them; ``input_image`` parts, for the models that take images) before anything
is reserved or billed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._reasoning import EFFORTS, SUMMARIES
from ._strict import strict_schema_error

__all__ = ["ApiError", "model_status", "validate_create", "validate_idempotency_key"]

COMPLETION_WINDOWS = ("asap", "standard")
_ROLES = frozenset(("user", "system", "developer", "assistant"))
_TEXT_PARTS = frozenset(("input_text", "output_text", "text"))
_UNSUPPORTED = ("previous_response_id", "conversation", "prompt")
_FORMATS = ("text", "json_schema")
_IMAGE_PART = "input_image"
_IMAGE_TYPES = frozenset(("image/jpeg", "image/png", "image/webp", "image/gif"))
_MAX_IMAGES = 20
_MAX_IMAGE_BYTES = 20 * 1024 * 1024
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
        if isinstance(part, dict) and part.get("type") == _IMAGE_PART:
            error = _check_image(part, f"{where}.content[{j}]")
            if error is not None:
                return error
            continue
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
            return _invalid(
                f"{where}.content[{j}]: only text and input_image content parts are supported.",
                f"{where}.content[{j}]",
            )
        if not isinstance(part.get("text"), str):
            return _invalid(
                f"{where}.content[{j}].text must be a string.", f"{where}.content[{j}].text"
            )
    return None


def _check_image(part: dict[str, Any], where: str) -> ApiError | None:
    """An ``input_image`` part: an http(s) or ``data:`` URL of a JPEG, PNG, WebP or GIF."""
    url = part.get("image_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:")):
        return _invalid(
            f"{where}.image_url must be an http(s) URL or a data: URL of the image "
            "(file ids are not supported).",
            f"{where}.image_url",
        )
    if url.startswith("data:"):
        media, _, data = url[5:].partition(",")
        if media.partition(";")[0].lower() not in _IMAGE_TYPES or ";base64" not in media:
            return _invalid(
                f"{where}.image_url: a data: URL must hold a base64 JPEG, PNG, WebP or GIF.",
                f"{where}.image_url",
                "invalid_image_format",
            )
        if len(data) * 3 // 4 > _MAX_IMAGE_BYTES:
            return _invalid(
                f"{where}.image_url: the image is larger than 20 MB.",
                f"{where}.image_url",
                "image_too_large",
            )
    if part.get("detail", "auto") not in ("auto", "low", "high"):
        return _invalid(f"{where}.detail must be one of: auto, low, high.", f"{where}.detail")
    return None


def _image_parts(value: Any) -> list[str]:
    """Where the input's ``input_image`` parts are (``input[i].content[j]``), in order."""
    found: list[str] = []
    for i, message in enumerate(value if isinstance(value, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == _IMAGE_PART:
                found.append(f"input[{i}].content[{j}]")
    return found


def _check_images(
    body: Mapping[str, Any], model: str, image_models: tuple[str, ...]
) -> ApiError | None:
    parts = _image_parts(body.get("input"))
    if not parts:
        return None
    if model not in image_models:
        return _invalid(
            f"model {model!r} does not support image input.", parts[0], "image_input_unsupported"
        )
    if len(parts) > _MAX_IMAGES:
        return _invalid(
            f"Too many images: {len(parts)} in this request, at most {_MAX_IMAGES} are allowed.",
            parts[_MAX_IMAGES],
            "too_many_images",
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


def _check_reasoning(body: Mapping[str, Any]) -> ApiError | None:
    """``reasoning`` (effort, generate_summary) and the documented pass-through fields."""
    value = body.get("reasoning")
    if value is not None:
        if not isinstance(value, dict):
            return _invalid("'reasoning' must be an object.", "reasoning")
        for name, allowed in (("effort", EFFORTS), ("generate_summary", SUMMARIES)):
            given = value.get(name)
            if given is not None and given not in allowed:
                return _invalid(
                    f"'reasoning.{name}' must be one of: {', '.join(allowed)}.",
                    f"reasoning.{name}",
                )
        unknown = sorted(k for k in value if k not in ("effort", "generate_summary"))
        if unknown:
            return _invalid(
                f"'reasoning.{unknown[0]}' is not supported.", f"reasoning.{unknown[0]}"
            )
    user = body.get("user")
    if user is not None and not (isinstance(user, str) and len(user) <= 256):
        return _invalid("'user' must be a string of at most 256 characters.", "user")
    key = body.get("prompt_cache_key")
    if key is not None and not isinstance(key, str):
        return _invalid("'prompt_cache_key' must be a string.", "prompt_cache_key")
    return None


def _check_strict(value: Any) -> ApiError | None:
    """A ``json_schema`` format sent with ``"strict": true`` must meet strict mode's rules."""
    fmt = value.get("format") if isinstance(value, dict) else None
    if not (isinstance(fmt, dict) and fmt.get("type") == "json_schema" and fmt.get("strict")):
        return None
    message = strict_schema_error(fmt.get("schema"), str(fmt.get("name", "")))
    if message is None:
        return None
    return _invalid(message, "text.format.schema", "invalid_json_schema")


def validate_create(
    body: Any,
    models: tuple[str, ...],
    *,
    strict_schemas: bool = False,
    image_models: tuple[str, ...] = (),
) -> ApiError | None:
    """Check a create body against the contract.

    Args:
        body: The decoded JSON body.
        models: The model ids the server serves.
        strict_schemas: Refuse a ``json_schema`` format sent with ``"strict": true`` whose
            schema breaks strict mode's rules (see ``_strict``).
        image_models: The models that take ``input_image`` parts; an image sent to another
            model is refused.

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
        or _check_reasoning(body)
        or _check_images(body, model, image_models)
        or (_check_strict(body.get("text")) if strict_schemas else None)
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
