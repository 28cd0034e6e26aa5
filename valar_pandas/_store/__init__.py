"""The run store: a SQLite file that remembers every request, so nothing paid for is lost.

For each (endpoint, fingerprint) it keeps the ``Idempotency-Key`` in use, the state
(``planned`` → ``submitted`` with a response id → ``done`` with the parsed result) and
timestamps. Rows sent through the Batch API also keep their batch's key and their
``custom_id``; the ``batches`` table maps each batch key to the server's batch id, written
right after the create, so a re-run polls the batch instead of creating it again.

Keys are written, all in one transaction, before the first create is sent. During a run,
response ids and results go through a :class:`Journal`, which writes what arrived in one
transaction per short tick (50 ms) instead of one per row: per-row commits cost more CPU than
the HTTP exchanges they record. A process killed at any instant loses at most the last tick,
and every state it can leave resumes without a second inference: finished rows come from
disk, submitted rows are re-attached by polling their id (or their batch), planned rows
(including those whose id was lost) are re-sent with the same key, which the server replays.
Batch keys and ids are written at once, in order with what the journal holds.

Rows that several runs want at once (a command's windows, jobs, processes sharing the file)
have one owner: a run claims the rows it sends in the transaction that reads them
(:meth:`RunStore.claim`), and the others wait for its verdict. An owner is alive while its
heartbeat is fresh (:data:`CLAIM_EXPIRY`) and, on this machine, its process runs; a run
releases its claims when its verdicts are written.

Rows are namespaced by the API base URL, so answers from the emulator never leak into a run
against the real API. The file uses WAL journaling, so several processes (or notebooks) can
share one store. The journal never waits for a lock on the event loop's thread: a write that
fails (locked, full, read-only, damaged) keeps its records in memory for a later tick, and
what a run could not write at all comes back as a :class:`StoreFault`, never as an exception
that would lose the run's answers. Failures are described in our own words: SQLite's
messages can quote stored text. ``PRAGMA user_version`` holds the schema version: an
older store is migrated on open, a newer one is refused with a clear error.

Modules: :mod:`.runstore` (:class:`RunStore`, the calls and their transactions),
:mod:`.journal` (a run's buffered writes), :mod:`.records` (the rows' SQL),
:mod:`.claims` (owners and heartbeats), :mod:`.hygiene` (info, listing, clearing),
:mod:`.connection` (opening the file, transactions), :mod:`.schema` (versions and
migrations), :mod:`.faults` (failures in our own words).
"""

from .claims import CLAIM_EXPIRY, HEARTBEAT, new_owner
from .connection import default_store_path
from .faults import StoreFault, classify
from .journal import Journal
from .records import Stored
from .runstore import LOCK_TIMEOUT, RunStore
from .schema import SCHEMA_VERSION

__all__ = [
    "CLAIM_EXPIRY",
    "HEARTBEAT",
    "LOCK_TIMEOUT",
    "SCHEMA_VERSION",
    "Journal",
    "RunStore",
    "StoreFault",
    "Stored",
    "classify",
    "default_store_path",
    "new_owner",
]
