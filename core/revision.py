"""The code revision a process runs: recorded with every model version and shown by /model/info."""

from __future__ import annotations

import os
import subprocess

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_revision() -> str:
    """GIT_SHA from the environment (set at image build), else `git rev-parse HEAD` of this checkout,
    else 'unknown'."""
    sha = os.environ.get("GIT_SHA", "").strip()
    if sha:
        return sha
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, cwd=_ROOT,
                             check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
