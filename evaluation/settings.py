"""Settings of the offline evaluation notebook (evaluation/offline_evaluation.ipynb), from the environment.

The test suite runs the notebook on a small slice by setting these; `core.settings` parses them, so a bad
value stops the notebook's first cell with a sentence naming the variable.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import EnvSettings, env


@dataclass(frozen=True)
class NotebookSettings(EnvSettings):
    """What the offline evaluation notebook scores."""

    demo_users: int = env("OFFLINE_DEMO_USERS", 0, minimum=0)
    """Cut the demo to this many light users; 0 keeps the whole demo."""
    users: int = env("OFFLINE_USERS", 200, minimum=1)
    """Score a seeded sample of this many users."""
    cache_dir: str = env("OFFLINE_CACHE_DIR", "data/eval_cache")
    """Where the MiniLM vectors of the demo catalog are cached between runs."""
    report: str = env("OFFLINE_REPORT", "", blank=True)
    """A report JSON of `python -m evaluation offline` (the gate's protocol or leave-last-out) to plot hit rate
    against coverage from, beside the notebook's own report; '' plots the notebook's only."""
