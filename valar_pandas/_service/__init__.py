"""One call, start to finish: what the accessor, the command and any other front end call.

:mod:`.call` prepares a call (options checked, rows rendered, requests planned), opens its
store, client and display, runs it and merges the report into a frame; :mod:`.score` adds the
scoring steps (the request options, the typed columns, re-asking unreadable replies);
:mod:`.preview` answers ``requests()`` and ``estimate()`` without sending.
"""
