"""The README's "Run it on your own catalog and stream" section, followed literally: its commands are read
from README.md (only the file names and the store's location are set for the test), run in order, and
the service they start serves the version the gate promoted."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from evaluation.offline import slice_demo
from evaluation.simulator.movielens import write_movielens
from tests.fixtures.inference_server import gunicorn_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def section_commands() -> tuple[list[str], list[str]]:
    """(the numbered setup commands, the commands shown after "Then:") of the README's section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Run it on your own catalog and stream", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"\n((?:    .+\n)+)", section)
    commands = [[line.strip().split("  #")[0].strip() for line in block.splitlines()] for block in blocks]
    return commands[0], next(c for c in commands if any("training status" in line for line in c))


def test_the_readme_own_data_section_serves_the_promoted_version(tmp_path, encoder):
    setup, then = section_commands()
    assert setup[0].startswith("make install")
    steps = setup[1:]
    assert [s.split()[2] for s in steps[:3]] == ["db_utils", "data_parsing", "training"]
    assert steps[3].startswith("gunicorn ")
    write_movielens(str(tmp_path / "ml"))
    catalog, events = slice_demo(str(tmp_path / "ml" / "catalog.csv"), str(tmp_path / "ml" / "events.log"),
                                 str(tmp_path / "mine"), users=80, seed=5)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/recsys.db", "CHROMA_PATH": str(tmp_path / "chroma"),
           "EMBED_ONNX_DIR": encoder.onnx_dir, "PROVENANCE_LOG": str(tmp_path / "provenance.log"),
           "POPULAR_SNAPSHOT": str(tmp_path / "popular.json"), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}

    def run(command: str) -> str:
        argv = [a.replace("my_events.log", events).replace("my_catalog.csv", catalog) for a in shlex.split(command)]
        assert argv[0] == "python"
        out = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, f"{command}: {out.stderr[-1500:]}"
        return out.stdout

    for command in steps[:3]:
        stdout = run(command)
    trained = json.loads(stdout.strip().splitlines()[-1])
    assert trained["version"] == "v1" and trained["status"] == "active", trained
    user = int(Path(events).read_text().split("\n", 1)[0].split(",")[1])
    server_env = {k: env[k] for k in ("DATABASE_URL", "CHROMA_PATH", "PROVENANCE_LOG", "POPULAR_SNAPSHOT")}
    # the README's gunicorn command (tests/fixtures/inference_server.py), on a free port
    with gunicorn_service(server_env) as service, \
            urllib.request.urlopen(f"{service.url}/recommend/{user}", timeout=10) as response:
        assert response.status == 200 and response.headers["X-Model-Version"] == "v1"
        assert len(response.read().decode().split(",")) == 20
    shown = [c for c in then if c.startswith("python ")]
    status = json.loads(run(next(c for c in shown if "training status" in c)))
    assert status["active"] == "v1"
    offline = next(c for c in shown if "evaluation offline" in c).replace("report.json", str(tmp_path / "r.json"))
    run(offline)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["matches_gate"] and report["service_ranking"]["users"] == trained["gate"]["candidate"]["users"]
    provenance = next(c for c in shown if "provenance" in c).replace("--user 42", f"--user {user}")
    trace = json.loads(run(provenance))
    assert trace["answer"]["version"] == "v1" and trace["version"]["code_revision"]
