"""/metrics holds the service's and the parser's series whichever way they start (issue 16, point 4).

The service is started with the README's own command and no PROMETHEUS_MULTIPROC_DIR (what a user and
`make run` do), and with one given (what compose and the image do); the parser with its documented
`ingest` command. Each is scraped after real requests."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from db_utils import migrate
from tests.fixtures.services import free_port, stop_process, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def documented_gunicorn_command() -> list[str]:
    """The gunicorn command line of the README (the one a new user copies)."""
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    found = [line for line in lines if line.startswith("gunicorn ")]
    assert found, "the README documents no gunicorn command"
    assert len({shlex.split(line, comments=True)[:4] == shlex.split(found[0], comments=True)[:4]
                for line in found}) == 1, "the README documents two different gunicorn commands"
    return shlex.split(found[0], comments=True)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def sample(body: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text exposition, or None when it is absent."""
    for line in body.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def service_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "CHROMA_HOST")}
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    return {**env, "PYTHONPATH": str(ROOT), "DATABASE_URL": url, "CHROMA_PATH": str(tmp_path / "chroma"),
            "HOST": "127.0.0.1", "PORT": str(port), "GUNICORN_WORKERS": "2", "ANONYMIZED_TELEMETRY": "False"}


def run_service(env: dict[str, str], log: Path) -> tuple[str, str]:
    """Start the README command, make 8 requests, scrape /metrics, stop; (body, gunicorn log)."""
    argv = documented_gunicorn_command()
    argv[0] = str(Path(sys.executable).parent / "gunicorn")
    base = f"http://127.0.0.1:{env['PORT']}"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is None and scrape(f"{base}/health") != "", timeout=60, what="gunicorn")
        for user in range(8):  # two workers: the requests land on both
            scrape(f"{base}/recommend/{user}")
        body = scrape(f"{base}/metrics")
    finally:
        assert stop_process(proc) == 0
    return body, log.read_text()


@pytest.mark.slow
def test_readme_gunicorn_command_without_multiproc_dir_serves_the_service_series(tmp_path: Path) -> None:
    env = service_env(tmp_path, free_port())
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    body, log = run_service(env, tmp_path / "gunicorn.log")
    assert sample(body, "recommend_latency_seconds_count") == 8
    assert sum(sample(body, "recommend_requests_total", kind=k) or 0
               for k in ("personalized", "cold_start", "fallback", "invalid")) == 8
    assert sample(body, "flask_http_request_total", method="GET", status="200") == 9  # 8 + /health
    private = re.search(r"prometheus multiprocess directory (\S+) \(private", log)
    assert private, log[-2000:]
    assert not os.path.exists(private.group(1)), "the private metrics directory outlived its master"


@pytest.mark.slow
def test_given_multiproc_dir_is_used_and_kept(tmp_path: Path) -> None:
    """The image's and compose's path: the variable is set; its directory is the caller's."""
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_1.db").write_bytes(b"stale")  # a previous run's samples must not be summed in
    env = {**service_env(tmp_path, free_port()), "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    body, log = run_service(env, tmp_path / "gunicorn.log")
    assert sample(body, "recommend_latency_seconds_count") == 8
    assert f"prometheus multiprocess directory {prom} (given, kept)" in log
    assert prom.is_dir()


def test_make_run_starts_the_documented_command() -> None:
    """`make run` ends in scripts/run_demo.py, which execs the README's gunicorn command itself."""
    demo = (ROOT / "scripts" / "run_demo.py").read_text()
    argv = documented_gunicorn_command()
    assert repr(argv).replace("'", '"') in demo.replace("'", '"')
    assert "run_demo.py" in (ROOT / "Makefile").read_text()


@pytest.mark.slow
def test_parser_ingest_serves_its_series(tmp_path: Path) -> None:
    """`python -m data_parsing ingest --source -` (the documented command) counts on its /metrics port."""
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url, "PARSER_METRICS_PORT": str(port),
           "PARSER_BATCH_SECONDS": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "data_parsing", "ingest", "--source", "-"], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lines = [f"2026-11-25T16:0{i}:00,{i},GET /data/m/m+{i}/1.mpg\n" for i in range(5)] + ["junk\n"]
        proc.stdin.write("".join(lines).encode())
        proc.stdin.flush()

        def counted() -> bool:
            try:
                body = scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return False
            return sample(body, "parser_events_total", kind="watch") == 5

        wait_for(counted, timeout=30, what="parser metrics")
        body = scrape(f"http://127.0.0.1:{port}/metrics")
        assert sample(body, "parser_rejected_total", reason="malformed") == 1
        assert sample(body, "parser_up") == 1
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc)
