"""inference.logs: request ids, and the access line written directly in JsonFormatter's shape."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from core.logs import Clock
from inference import logs


def test_fresh_request_ids_are_32_hex_digits_and_unique():
    ids = [logs.request_id(None) for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("header", ["abc-123", "a.b:c_d", "x" * 128])
def test_a_sane_caller_id_is_kept(header):
    assert logs.request_id(header) == header


@pytest.mark.parametrize("header", ["", "bad id", "tab\there", "x" * 129, "ünïcode", "a\nb"])
def test_an_unsafe_caller_id_is_replaced(header):
    replaced = logs.request_id(header)
    assert replaced != header and re.fullmatch(r"[0-9a-f]{32}", replaced)


def test_a_forked_worker_draws_its_own_prefix():
    """gunicorn forks its workers from one master: their ids must not collide."""
    parent = logs.request_id(None)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write_end, logs.request_id(None).encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child[:16] != parent[:16]


def test_access_line_has_the_formatter_shape(capsys):
    logs.setup_logging()
    logs.access_line({"request_id": "r1", "status": 200, "latency_ms": 1.25, "path": "/recommend/1"})
    record = logging.makeLogRecord({"name": "inference.access", "levelname": "INFO", "msg": "request",
                                    "request_id": "r1", "status": 200, "latency_ms": 1.25, "path": "/recommend/1"})
    via_logging = json.loads(logs.JsonFormatter().format(record))
    written = json.loads(capsys.readouterr().err)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", written["ts"])
    assert list(written) == list(via_logging)
    assert {k: v for k, v in written.items() if k != "ts"} == {k: v for k, v in via_logging.items() if k != "ts"}


def test_access_line_follows_the_logger_level(capsys):
    logs.setup_logging()
    logger = logging.getLogger(logs.ACCESS_LOGGER)
    logger.setLevel(logging.WARNING)
    try:
        logs.access_line({"request_id": "quiet"})
    finally:
        logger.setLevel(logging.NOTSET)
    assert capsys.readouterr().err == ""


def test_clock_formats_milliseconds_like_the_formatter():
    clock = Clock()
    assert clock.ts(0.0) == "1970-01-01T00:00:00.000Z"
    assert clock.ts(0.9996) == "1970-01-01T00:00:00.999Z"
    assert clock.ts(86_401.25) == "1970-01-02T00:00:01.250Z"
