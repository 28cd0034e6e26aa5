"""When a failure is about the endpoint, not a row, and what to tell the user. Pure.

Some failures say nothing about a row and everything about the endpoint: a certificate that
does not verify, a host that does not resolve, a port nobody listens on, a redirect, answers
that are not the API's JSON, a server that never answers. :class:`Health` watches every
exchange of a run and decides when such a failure is proven (one redirect; a few failures of
the same kind in a row with no good answer between), and :func:`explain` says what to do.
:class:`ColdStart` keeps a run whose every create is refused the same way from sending more
than a few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["FATAL_EVIDENCE", "ColdStart", "Fault", "Health", "explain", "suggest_base_url"]

Fault = Literal[
    "certificate", "tls", "dns", "refused", "redirect", "not_api", "silent", "too_large",
    "transient", "proxy", "proxy_unreachable",
]  # fmt: skip
"""Why an exchange gave no usable answer.

``certificate``: the server's certificate did not verify. ``tls``: no TLS session could be
set up (e.g. https:// to a plain-HTTP port). ``dns``: the host name did not resolve.
``refused``: nothing listens on the port. ``redirect``: a 3xx answer. ``not_api``: an answer
that is not JSON (an HTML page, a proxy's text). ``silent``: no answer before the timeout.
``too_large``: the answer exceeds the size cap (a row error, never retried). ``transient``:
anything else worth a retry (a reset, a cut answer, a 5xx, 408, 409, 429). ``proxy``: the
proxy refused: a 407 (credentials missing or wrong), or a non-2xx answer to ``CONNECT`` (the
proxy will not or cannot open a tunnel to the API). ``proxy_unreachable``: the proxy itself
cannot be reached (not resolved, refused, unreachable).
"""

FATAL_EVIDENCE: dict[str, tuple[int, bool]] = {
    "certificate": (1, False),
    "redirect": (1, False),
    "dns": (2, True),
    "tls": (3, True),
    "refused": (3, True),
    "not_api": (3, True),
    "silent": (3, False),
    "proxy": (1, False),
    "proxy_unreachable": (2, True),
}
"""Fault → (failures of that kind in a row that prove the endpoint unusable, whether they
count only before the first good answer). A certificate, a redirect or a proxy's refusal is
the server's (or the proxy's) own word; a host or a proxy that cannot be reached is checked
twice; the rest need three in a row. Refused connections, TLS errors, unresolvable names,
unreachable proxies and non-JSON answers are taken as transient once the endpoint has
answered well: a server restarting mid-run is not a wrong address."""


@dataclass
class Health:
    """What a run has seen of its endpoint. Pure: it is told each exchange's result.

    Every exchange reports once: ``None`` for a good answer, else its :data:`Fault`. A good
    answer, or a fault of another kind, ends a streak; :meth:`observe` says when a streak
    proves the endpoint unusable (see :data:`FATAL_EVIDENCE`).

    Attributes:
        reached: A good answer arrived at least once.
        fault: The kind of the current streak, if any.
        streak: Failures of that kind in a row.
    """

    reached: bool = False
    fault: Fault | None = None
    streak: int = 0

    def observe(self, fault: Fault | None) -> bool:
        """Record one exchange's result.

        Args:
            fault: None for a good answer, else why it gave no usable answer.

        Returns:
            True when this result proves the endpoint unusable: the run must stop.
        """
        if fault is None:
            self.reached, self.fault, self.streak = True, None, 0
            return False
        rule = FATAL_EVIDENCE.get(fault)
        if rule is None or (rule[1] and self.reached):
            self.fault, self.streak = None, 0
            return False
        if fault == self.fault:
            self.streak += 1
        else:
            self.fault, self.streak = fault, 1
        return self.streak >= rule[0]


@dataclass
class ColdStart:
    """Creates in flight before the first is accepted. Pure: time is passed in.

    Until one create has been accepted, at most ``limit`` creates are out at once, fewer by
    the identical rejections seen so far: a run whose every create is refused the same way
    (an unknown model, a bad key) sends ``limit`` creates, not ``concurrency``, before it
    stops. A realtime create is only answered when its model has finished, so the limit also
    lifts ``grace`` seconds after the first create left without a rejection coming back.

    Attributes:
        limit: Creates in flight while cold.
        grace: Seconds after the first create after which the limit lifts anyway.
        first: When the first create left (None before).
        warm: The limit has lifted.
    """

    limit: int = 5
    grace: float = 2.0
    first: float | None = None
    warm: bool = False

    def allowed(self, rejections: int, now: float) -> int | None:
        """Creates allowed in flight now, or None for no limit.

        Args:
            rejections: Identical rejections so far (none accepted).
            now: The current time.
        """
        if not self.warm and self.first is not None and now - self.first >= self.grace:
            self.warm = True
        return None if self.warm else max(1, self.limit - rejections)


def suggest_base_url(location: str, path: str) -> str | None:
    """The base URL a redirect points at, when it kept the request's path.

    Args:
        location: The ``Location`` header (an absolute URL).
        path: The request's path below the base URL, e.g. ``/responses``.

    Returns:
        The location without ``path`` at its end (and without a query), or None when the
        location is relative or does not end with the path.

    Example:
        >>> suggest_base_url("https://api.example.com/v1/responses", "/responses")
        'https://api.example.com/v1'
    """
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if not parts.path.endswith(path):
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path[: len(parts.path) - len(path)]}"


def explain(
    fault: Fault,
    *,
    base_url: str,
    host: str,
    authority: str,
    detail: str,
    location: str | None = None,
    path: str = "/responses",
    timeout: float = 0.0,
) -> str:
    """The message of a run stopped by an unusable endpoint: the cause, then the fix.

    Args:
        fault: The proven fault.
        base_url: The configured base URL.
        host: Its host.
        authority: Its host and port as shown.
        detail: What the transport said (e.g. the certificate error), or the status seen.
        location: A redirect's ``Location``.
        path: The path of the request that was redirected.
        timeout: Seconds each request waited, for ``silent``.

    Returns:
        One paragraph, without the API key (none of the inputs holds it).
    """
    where = "VALAR_BASE_URL or ValarClient(base_url=...)"
    if fault == "certificate":
        return (
            f"the TLS certificate of {authority} could not be verified ({detail}), so nothing "
            f"was sent. If the server uses a private or self-signed certificate authority, "
            f"trust that CA: set the environment variable SSL_CERT_FILE to a PEM bundle that "
            f"includes it (or SSL_CERT_DIR to a directory of hashed certificates) before the "
            f'run starts, or pass ValarClient(verify="path/to/ca.pem"). Otherwise check the '
            f"host in the base URL ({base_url})"
        )
    if fault == "redirect":
        target = location or "no Location"
        suggested = suggest_base_url(location, path) if location else None
        fix = (
            f"use base_url={suggested!r} if that is the Valar API"
            if suggested
            else f"check the base URL ({where})"
        )
        return (
            f"the server at {base_url} answered {detail} redirecting to {_clip(target)}; "
            f"valar_pandas does not follow redirects (they would carry the key and the "
            f"request elsewhere): {fix}"
        )
    if fault == "dns":
        return (
            f"the host name {host!r} could not be resolved ({detail}): check the host in the "
            f"base URL ({where}) and the network's DNS"
        )
    if fault == "refused":
        return (
            f"every connection to {authority} was refused: nothing listens there. Check the "
            f"host and port of the base URL ({base_url}) and that the server is running"
        )
    if fault == "tls":
        return (
            f"no TLS session could be set up with {authority} ({detail}): if the server "
            f"speaks plain HTTP, the base URL must start with http://, not https://"
        )
    if fault == "not_api":
        return (
            f"the server at {base_url} answers with something other than the API's JSON "
            f"({detail}): check the base URL ({where}); it is the API root, ending in /v1"
        )
    if fault == "silent":
        return (
            f"the server at {authority} accepted requests but answered none of the last "
            f"{FATAL_EVIDENCE['silent'][0]} (each waited {timeout:g} s), so the run stopped: "
            f"check that the base URL ({base_url}) is the API and that it is up, or give "
            f"slower servers more time with ValarClient(timeout=...)"
        )
    if fault == "proxy":
        return (
            f"{detail}, so nothing was sent to {authority}. Check the proxy's address and, "
            f"if it asks for credentials, the user name and password in its URL "
            f"(http://user:password@host:port, percent-encoding any : @ or / in them) in "
            f"HTTPS_PROXY / HTTP_PROXY / ALL_PROXY or ValarClient(proxy=...); if {host!r} "
            f"should be reached directly, list it in NO_PROXY"
        )
    if fault == "proxy_unreachable":
        return (
            f"{detail}. Check the proxy's host and port in HTTPS_PROXY / HTTP_PROXY / "
            f"ALL_PROXY or ValarClient(proxy=...) and that the proxy is running; "
            f"ValarClient(trust_env=False) ignores the environment's proxy"
        )
    return f"the server at {base_url} cannot be used: {detail}"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
