"""What the service last saw of each dependency (the SQL store, the vectors), for /ready and the
`recommender_ready` gauge. One job: record outcomes; it never calls a dependency itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class DependencyState:
    """The last thing seen of one dependency."""

    ok: bool = True
    error: str | None = None
    at: float = field(default_factory=time.time)


def classify(exc: BaseException, default: str) -> str:
    """The fallback reason of an exception: timeout when it says so, else the dependency's name."""
    text = f"{type(exc).__name__} {exc}".lower()
    return "timeout" if "timeout" in text or "timed out" in text else default


def describe(exc: BaseException) -> str:
    """One line naming an exception, for /ready and logs."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


class Health:
    """Per dependency, the last outcome; `ready` is every dependency fine and a popular list held
    (`has_popular`), written to `set_gauge` only when it changes."""

    def __init__(self, set_gauge: Callable[[int], None], has_popular: Callable[[], bool],
                 names: tuple[str, ...] = ("sql", "vectors")):
        self.state: dict[str, DependencyState] = {name: DependencyState() for name in names}
        self._set_gauge = set_gauge
        self._has_popular = has_popular
        self._ready: bool | None = None

    def mark(self, name: str, exc: BaseException | None) -> None:
        """Record what a request saw of a dependency (a success after a success changes nothing)."""
        previous = self.state[name]
        if exc is None and previous.ok:
            return
        self.state[name] = DependencyState(ok=exc is None, error=None if exc is None else describe(exc))
        self.set_ready(all(s.ok for s in self.state.values()) and self._has_popular())

    def set_ready(self, ready: bool) -> None:
        """Set the gauge (written only when the value changes)."""
        if ready != self._ready:
            self._ready = ready
            self._set_gauge(1 if ready else 0)
