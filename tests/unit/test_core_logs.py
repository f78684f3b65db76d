"""core.logs: one JSON-lines shape for every role, from a dict message, a plain message or extra fields."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from core import logs

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _format(msg, args=None, **extra):
    record = logging.makeLogRecord({"name": "embeddings.job", "levelname": "WARNING", "msg": msg,
                                    "args": args, "created": 86_401.25, "msecs": 250.0, **extra})
    return json.loads(logs.JsonFormatter().format(record))


def test_a_dict_message_gives_the_event_then_request_id_then_its_fields():
    line = _format({"movies": 8, "event": "batch_committed", "request_id": "r1", "at": {"a": 1}})
    assert list(line) == ["ts", "level", "logger", "event", "request_id", "movies", "at"]
    assert line == {"ts": "1970-01-02T00:00:01.250Z", "level": "warning", "logger": "embeddings.job",
                    "event": "batch_committed", "request_id": "r1", "movies": 8, "at": {"a": 1}}


def test_a_plain_message_is_msg_and_extras_are_fields():
    line = _format("took %d s", (3,), request_id="r2", status=200)
    assert list(line) == ["ts", "level", "logger", "msg", "request_id", "status"]
    assert (line["msg"], line["request_id"], line["status"]) == ("took 3 s", "r2", 200)


class _Path:
    def __str__(self) -> str:
        return "/data/x"


def test_values_json_cannot_hold_are_written_as_text():
    assert _format({"event": "e", "path": _Path()})["path"] == "/data/x"


def test_an_exception_is_one_field():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, {"event": "failed"}, None,
                                                   exc_info=sys.exc_info())
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["event"] == "failed" and "RuntimeError: boom" in line["exc"]


def test_setup_writes_every_logger_through_one_handler(capsys):
    name = "core-logs-test"
    logger = logs.setup(logging.INFO, name, propagate=False)
    logs.setup(logging.DEBUG, name, propagate=False)  # idempotent: one handler, the new level
    assert sum(isinstance(h, logs.StderrHandler) for h in logger.handlers) == 1
    try:
        logging.getLogger(f"{name}.child").debug({"event": "hello", "n": 1})
        line = json.loads(capsys.readouterr().err)
    finally:
        logger.handlers.clear()
    assert TS.fullmatch(line["ts"]) and (line["logger"], line["event"], line["n"]) == (f"{name}.child", "hello", 1)


@pytest.mark.parametrize(("now", "text"), [(0.0, "1970-01-01T00:00:00.000Z"), (0.9996, "1970-01-01T00:00:00.999Z"),
                                           (86_401.25, "1970-01-02T00:00:01.250Z")])
def test_the_cached_clock_and_the_formatter_write_the_same_time(now, text):
    assert logs.Clock().ts(now) == logs.format_ts(now) == text
