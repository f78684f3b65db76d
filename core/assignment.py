"""Experiment assignment: which arm of an experiment answers a user.

A user's arm is a pure function of (experiment id, user id, arms): the BLAKE2b digest of
``f"{experiment_id}:{user_id}"`` read as a 64-bit integer and divided by 2**64 gives a point in [0, 1),
and the arms, in the order given, cut [0, 1) by their cumulative shares. So an assignment is

- sticky: the same user gets the same arm on every request, worker, replica and restart;
- process-independent: hashlib, never Python's salted ``hash()`` (PYTHONHASHSEED changes nothing);
- independent between experiments: the experiment id is part of the hashed text, so the arms a user gets
  in two experiments are unrelated;
- the same for unknown and cold-start users: only the id is hashed.

Changing the shares of a running experiment moves only the users near the cut points (the order of the
arms stays), but it invalidates the experiment's statistics: start a new experiment instead.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import numbers
from collections.abc import Callable, Sequence

SHARE_TOLERANCE = 1e-9
_SCALE = 2.0**64


def bucket(experiment_id: str, user_id: int) -> float:
    """The user's point in [0, 1) for this experiment (uniform over users, stable across processes)."""
    digest = hashlib.blake2b(f"{experiment_id}:{int(user_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def validate_arms(arms: Sequence[tuple[str, float]]) -> None:
    """Raise ValueError (one sentence) unless arms have distinct names and positive shares summing to 1."""
    if not arms:
        raise ValueError("an experiment needs at least one arm")
    names = [name for name, _ in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be distinct, got {names}")
    for name, share in arms:
        if isinstance(share, bool) or not (isinstance(share, numbers.Real) and math.isfinite(share) and share > 0):
            raise ValueError(f"the share of arm {name!r} must be a positive number, got {share!r}")
    total = math.fsum(share for _, share in arms)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"arm shares must sum to 1, got {total!r}")


def assigner(experiment_id: str, arms: Sequence[tuple[str, float]]) -> Callable[[int], str]:
    """``assign`` for one experiment with the shares checked and the cut points computed once (the
    service's per-request path)."""
    validate_arms(arms)
    names = [name for name, _ in arms]
    cuts = list(itertools.accumulate(share for _, share in arms))[:-1]  # the last arm takes the rest of [0, 1)

    def arm_of(user_id: int) -> str:
        return names[bisect.bisect_right(cuts, bucket(experiment_id, user_id))]

    return arm_of


def assign(experiment_id: str, user_id: int, arms: Sequence[tuple[str, float]]) -> str:
    """The name of the arm that answers ``user_id`` in ``experiment_id``; ``arms`` is [(name, share)]."""
    return assigner(experiment_id, arms)(user_id)
