"""Running a plan: the composition root, the background engine, the Batch API, the loop.

:mod:`.compose` (``run_plan``) splits a plan against the store (:mod:`.claims`), picks the
background engine (:mod:`.engine`, :mod:`.poller`) or the Batch API (:mod:`.batch`,
:mod:`.batchwatch`), fans events out (:mod:`.fanout`) and closes everything. :mod:`.loop` is
the library's event loop thread, :mod:`.job` a run the caller polls, :mod:`.cancel` the
server-side cancels a stop may ask for.
"""
