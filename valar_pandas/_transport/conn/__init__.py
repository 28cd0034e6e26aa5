"""A lean HTTP/1.1 client: keep-alive connections on asyncio transports, parsed by httptools.

Why not aiohttp's client: at two requests a row the client's CPU per request is what a large
run costs, and ``aiohttp.ClientSession`` spends 0.33-0.41 ms of CPU per request on a 2-core
machine (URL and header objects, tracing hooks, timers, response objects) before the run does
any work of its own. The exchange this module performs costs about a third of that (measured in
``docs/performance.md``). The API needs a small part of HTTP, and that is all this speaks: JSON
bodies with a ``Content-Length`` out; answers with ``Content-Length``, chunked or
close-delimited bodies in, plain or gzip/deflate; one request at a time per connection; TLS
through :mod:`ssl` with the client's one SSL context; HTTP proxies, by absolute-form requests
or a ``CONNECT`` tunnel. The grammar is httptools (llhttp, the parser of Node.js), so no HTTP
parsing lives here. Not supported, on purpose: redirects, cookies, SOCKS and HTTP/2; the API
uses none of them.

A request that fails on a reused keep-alive connection before any byte of the answer arrived
(the server closed the idle connection as the request left) is sent once more on a fresh
connection when the caller says that is safe: a ``GET``, or a request with an
``Idempotency-Key``.

Until one connection to the endpoint has succeeded, connection attempts go one at a time: a
certificate that does not verify, a host that does not resolve or a closed port is then seen
by a single handshake instead of one per waiting request, and the caller can stop there.
Every failure says what kind it is (:data:`~valar_pandas._policy.Fault`).

Answers are bounded: a body, and a gzip or deflate body once inflated, may not exceed the
request's ``cap`` in bytes. Inflating stops at the cap (``decompressobj`` with
``max_length``), so a small compressed answer cannot make a large one in memory.

Modules: :mod:`.pool` (keep-alive connections, the
resend and the one-at-a-time first connect), :mod:`.connection` (one connection: the request
written, the answer parsed, inflated within its cap), :mod:`.tunnel` (opening a connection:
Happy Eyeballs, and the ``CONNECT`` tunnel through a proxy).
"""

from ..._core.endpoint import Endpoint
from .connection import MAX_HEADER_BYTES, Answer, ConnectionFailed
from .pool import Pool

__all__ = ["MAX_HEADER_BYTES", "Answer", "ConnectionFailed", "Endpoint", "Pool"]
