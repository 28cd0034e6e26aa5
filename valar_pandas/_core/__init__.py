"""The pure core: the API's contract, the options, prompts, planning, prices and estimates.

Nothing here does I/O, keeps time, or imports pandas: every module is plain data in, plain
data out, and table-tested without a server (the import-linter contracts in ``pyproject.toml``
hold it to that). Everything above it (transport, store, run, frame, service, command) builds
on these decisions and adds no rules of its own.
"""
