"""The package's logger: ``valar_pandas``, silent until the application configures logging.

Library convention: the package logger carries a :class:`logging.NullHandler`, so nothing is
printed unless the application asks (``logging.basicConfig(level=logging.INFO)`` shows a line
per run). Each area logs under a child (``valar_pandas.run``, ``valar_pandas.store``...), so
an application can raise or lower one area alone.

Never log the API key, a request body or an answer's text: records hold counts, names,
states and ids. A key only exists inside a :class:`~valar_pandas._core.secret.Secret`, whose
``repr`` is masked, and server text is scrubbed of it before it reaches any message.
"""

from __future__ import annotations

import logging

__all__ = ["LOGGER", "child"]

LOGGER = logging.getLogger("valar_pandas")
LOGGER.addHandler(logging.NullHandler())


def child(area: str) -> logging.Logger:
    """The logger of one area of the package, e.g. ``child("run")`` → ``valar_pandas.run``.

    Args:
        area: The area's name.

    Returns:
        The child of the package logger.
    """
    return LOGGER.getChild(area)
