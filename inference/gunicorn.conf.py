"""gunicorn settings for the inference service (every value can be overridden from the environment).

* workers: GUNICORN_WORKERS (or WEB_CONCURRENCY), default 2 (one per core on the target machine).
* worker_class: GUNICORN_WORKER_CLASS, default gthread with GUNICORN_THREADS=2: it keeps connections
  alive (the sync worker closes every one) and measured faster on 2 cores (docs/benchmarks.md).
* timeout 30 s (a stuck worker is replaced), graceful_timeout 10 s (SIGTERM lets requests in flight
  finish), keepalive 5 s.
* preload_app stays off: each worker imports the app after the fork, and the app opens its SQLite,
  PostgreSQL and ChromaDB handles lazily on first use anyway, so no handle crosses a fork.
* max_requests (GUNICORN_MAX_REQUESTS) is 0: the service holds its memory flat and needs no recycling;
  set it as a safety net if a deployment ever needs one.
* limit_request_line 0 lifts gunicorn's 4 KB request-line cap so a 10 KB user id reaches the app and
  gets the service's own one-sentence 400 (gunicorn still caps the line at 1 MB).
* control socket: off unless GUNICORN_CONTROL_SOCKET names a path.
* Prometheus multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set here BEFORE prometheus_client is first
  imported (it picks its in-memory or file-backed value class at import, and the workers inherit the
  master's modules: imported first, every worker counted in memory while /metrics read an empty
  directory). When unset, each master makes a private directory under the temp dir and removes it at exit
  (`on_exit`); a given directory is cleared of its *.db sample files at start and kept. Each dead worker's
  live gauges are removed (`child_exit`).
"""

import glob
import os
import shutil
import tempfile

# A configuration reload (SIGHUP) runs this file again with the variable set: the marker keeps the
# directory this master made its own.
_OWN_METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "") in ("", os.environ.get("_INFERENCE_OWN_PROM_DIR"))
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["_INFERENCE_OWN_PROM_DIR"] = tempfile.mkdtemp(
        prefix="inference-prom-")

from prometheus_client import multiprocess  # noqa: E402 - must follow PROMETHEUS_MULTIPROC_DIR


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_env_int('PORT', 8082)}"
workers = _env_int("GUNICORN_WORKERS", _env_int("WEB_CONCURRENCY", 2))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = _env_int("GUNICORN_THREADS", 2)
timeout = _env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 10)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
backlog = 2048
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
limit_request_line = 0
preload_app = False
accesslog = None  # the app writes JSON access lines itself, with request id and latency
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
proc_name = "movie-recommender-inference"
# gunicorn 27's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which
# several instances on one machine (tests, benchmarks, `make run`) would fight over: off unless a path
# is given.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True

raw_env = [f"PROMETHEUS_MULTIPROC_DIR={os.environ['PROMETHEUS_MULTIPROC_DIR']}"]


def on_starting(server):
    """Start from an empty metrics directory: samples of a previous run must not be summed in."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):  # only prometheus_client's own files
        os.remove(name)
    server.log.info("prometheus multiprocess directory %s (%s)", path,
                    "private, removed at exit" if _OWN_METRICS_DIR else "given, kept")


def on_exit(server):
    """Remove the private metrics directory this master made (a given directory is the caller's)."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (recommender_ready) from the aggregated /metrics."""
    multiprocess.mark_process_dead(worker.pid)
