"""The pure policies of a run: what to retry, when to poll, how fast to send, when to stop.

Pure arithmetic, table-tested without a server: time and randomness are passed in.

- :mod:`.retry`: which failures are retried, the backoff, ``Retry-After``;
- :mod:`.polling`: the poll schedule, the learnt latency model and the poll planner;
- :mod:`.rate`: adaptive concurrency (AIMD) and the request-rate bucket;
- :mod:`.health`: when a failure proves the endpoint unusable and what to say, and the
  cold-start limit on creates.
"""

from .health import FATAL_EVIDENCE, ColdStart, Fault, Health, explain, suggest_base_url
from .polling import LatencyModel, PollPlanner, PollSchedule
from .rate import Aimd, TokenBucket
from .retry import MAX_RETRY_AFTER_CHARS, OVERLOAD, RETRYABLE, RetryPolicy, parse_retry_after

__all__ = [
    "FATAL_EVIDENCE",
    "MAX_RETRY_AFTER_CHARS",
    "OVERLOAD",
    "RETRYABLE",
    "Aimd",
    "ColdStart",
    "Fault",
    "Health",
    "LatencyModel",
    "PollPlanner",
    "PollSchedule",
    "RetryPolicy",
    "TokenBucket",
    "explain",
    "parse_retry_after",
    "suggest_base_url",
]
