"""The provenance line on its own: the shape `training provenance` reads back, and the cached clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from inference.provenance import ProvenanceLog, UtcMicros, find_answer, read_lines


@pytest.mark.parametrize("ns", [0, 1_764_786_120_000_000_000, 1_764_786_120_999_999_999,
                                1_764_786_121_000_000_500, 1_764_786_119_123_456_789])
def test_the_cached_clock_writes_what_datetime_isoformat_writes(ns):
    expected = datetime.fromtimestamp(ns // 1000 / 1e6, UTC).replace(microsecond=ns // 1000 % 1_000_000)
    assert UtcMicros(lambda: ns).now() == expected.isoformat(timespec="microseconds")


def test_the_cached_clock_moves_to_the_next_second_and_back():
    times = iter([1_764_786_120_999_999_000, 1_764_786_121_000_001_000, 1_764_786_120_500_000_000])
    clock = UtcMicros(lambda: next(times))
    assert [clock.now() for _ in range(3)] == ["2025-12-03T18:22:00.999999+00:00",
                                                "2025-12-03T18:22:01.000001+00:00",
                                                "2025-12-03T18:22:00.500000+00:00"]


def test_a_line_is_compact_json_that_training_provenance_reads_back(tmp_path):
    path = str(tmp_path / "provenance.log")
    log = ProvenanceLog(path)
    log.write("r1", 7, "v2", "personalized", ("a+2000", "b+2001"))
    log.write("r2", 7, "v3", "fallback", ["c+2002"], experiment="exp", arm="treatment")
    raw = (tmp_path / "provenance.log").read_text(encoding="utf-8").splitlines()
    assert raw[0].startswith('{"ts":"') and ", " not in raw[0] and ": " not in raw[0]
    first = json.loads(raw[0])
    assert list(first) == ["ts", "request_id", "user_id", "version", "kind", "ids"]
    assert first["ids"] == ["a+2000", "b+2001"]
    assert datetime.fromisoformat(first["ts"]).tzinfo is not None
    last = find_answer(read_lines(path), 7)
    assert last is not None and (last["version"], last["experiment"], last["arm"]) == ("v3", "exp", "treatment")
