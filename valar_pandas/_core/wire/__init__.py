"""The Valar contract as pure functions: request bodies, fingerprints, parsing, statuses.

No sockets, no sleeping, no pandas. Everything here is decided from plain data, so it is
table-tested without a server. See ``valar-api.md`` in the design notes for the sources.

Status vocabulary: the API reference documents ``pending/running`` while the idempotency
guide and observed traffic use ``queued/in_progress``; batch item statuses are upper-case.
:func:`normalise_status` accepts all of them.

Modules: :mod:`.bodies` (request bodies, fingerprints, idempotency keys), :mod:`.responses`
(statuses, output text, Response objects, error envelopes), :mod:`.untrusted` (bounded JSON
decoding, text made encodable, ids checked before use).
"""

from .bodies import attempt_key, make_request, response_body
from .responses import (
    MAX_TOKENS,
    TERMINAL,
    ParsedResponse,
    Status,
    error_summary,
    normalise_status,
    output_text,
    parse_response,
)
from .untrusted import MAX_JSON_DEPTH, TooDeep, decode_json, encodable, usable_id

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_TOKENS",
    "TERMINAL",
    "ParsedResponse",
    "Status",
    "TooDeep",
    "attempt_key",
    "decode_json",
    "encodable",
    "error_summary",
    "make_request",
    "normalise_status",
    "output_text",
    "parse_response",
    "response_body",
    "usable_id",
]
