"""A string that keeps itself out of reprs, logs and tracebacks: the API key, a proxy's login.

Pure. Whoever holds a :class:`Secret` can put it on the wire (:meth:`Secret.reveal`) and
nothing else: its ``repr`` and ``str`` are masked, and it cannot be pickled into a cache or a
process boundary by accident.
"""

from __future__ import annotations

__all__ = ["Secret"]


class Secret:
    """A string that does not show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Call only where it must go on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")
