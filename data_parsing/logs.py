"""JSON-lines logging for the parser: the shape every role shares (`core.logs`)."""

from __future__ import annotations

import logging

from core.logs import JsonFormatter
from core.logs import setup as _setup

__all__ = ["JsonFormatter", "setup"]


def setup(level: int = logging.INFO) -> None:
    """Send every log record to stderr as JSON lines (idempotent)."""
    _setup(level)
