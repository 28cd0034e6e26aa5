"""The road to the API: the HTTP/1.1 pool, the run's doorway, and one retrying exchange.

:mod:`.conn` speaks the wire (keep-alive connections, httptools, TLS, caps); :mod:`.http` is a
run's doorway (the request budget, the key in the header, every answer scrubbed, endpoint
health); :mod:`.exchange` is the one retry loop every caller (engine, batches, cancels) uses,
with :mod:`.gate`'s limit on requests in flight moved by overload.
"""
