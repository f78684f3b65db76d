"""The demo and synthetic streams: every line in one of the simulator's three formats, deterministic."""

from __future__ import annotations

import csv
import hashlib
import re
from datetime import datetime
from pathlib import Path

import pytest

from evaluation.simulator import formats
from evaluation.simulator.__main__ import main

TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
SLUG = r"[a-z0-9]+(?:\+[a-z0-9]+)*"
WATCH = re.compile(rf"^{TIME},\d+,GET /data/m/{SLUG}/\d+\.mpg$")
RATE = re.compile(rf"^{TIME},\d+,GET /rate/{SLUG}=[1-5]$")
RECOMMEND = re.compile(rf"^{TIME},\d+,recommendation request [^,]+, status \d+, result: {SLUG}(?:, {SLUG})*, \d+ ms$")


def kinds(path: Path) -> dict[str, int]:
    counts = {"watch": 0, "rate": 0, "recommendation": 0, "other": 0}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            kind = ("watch" if WATCH.match(line) else "rate" if RATE.match(line)
                    else "recommendation" if RECOMMEND.match(line) else "other")
            counts[kind] += 1
    return counts


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_line_formats_match_the_simulator() -> None:
    ts = datetime(2015, 10, 27, 10, 0, 0)
    assert formats.watch_line(ts, 7, "the+lion+king+1994", 12) == (
        "2015-10-27T10:00:00,7,GET /data/m/the+lion+king+1994/12.mpg")
    assert formats.rate_line(ts, 7, "up+2009", 4) == "2015-10-27T10:00:00,7,GET /rate/up+2009=4"
    assert formats.recommendation_line(ts, 7, "h:8082", 200, ["a+1", "b+2"], 35) == (
        "2015-10-27T10:00:00,7,recommendation request h:8082, status 200, result: a+1, b+2, 35 ms")


def test_synth_writes_exact_line_count_all_valid_and_is_deterministic(tmp_path: Path) -> None:
    args = ["synth", "--users", "500", "--movies", "40", "--events", "3000", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    events = tmp_path / "a" / "events.log"
    assert digest(events) == digest(tmp_path / "b" / "events.log")
    counts = kinds(events)
    assert sum(counts.values()) == 3000 and counts["other"] == 0
    assert min(counts["watch"], counts["rate"], counts["recommendation"]) > 0
    with (tmp_path / "a" / "catalog.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
    assert all(re.fullmatch(SLUG, r["id"]) and r["title"] and r["year"].isdigit() for r in rows)
    users = [int(line.split(",")[1]) for line in events.read_text().splitlines()]
    assert all(1 <= u <= 500 for u in users)


def test_synth_noise_corrupts_lines(tmp_path: Path) -> None:
    assert main(["synth", "--users", "100", "--movies", "20", "--events", "2000", "--noise", "0.3",
                 "--out", str(tmp_path)]) == 0
    assert kinds(tmp_path / "events.log")["other"] > 50


def test_synth_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["synth", "--users", "0", "--out", str(tmp_path)])
    assert "must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_movielens_demo_stream(tmp_path: Path) -> None:
    assert main(["movielens", "--out", str(tmp_path)]) == 0
    counts = kinds(tmp_path / "events.log")
    assert counts["rate"] == 100_004 and counts["other"] == 0 and counts["recommendation"] == 0
    assert counts["watch"] >= counts["rate"]
    with (tmp_path / "catalog.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9066 and len({r["id"] for r in rows}) == 9066
    assert {"id": "toy+story+1995", "title": "Toy Story", "year": "1995",
            "genres": "Adventure|Animation|Children|Comedy|Fantasy"} in rows
    times = [line[:19] for line in (tmp_path / "events.log").read_text().splitlines()]
    assert times == sorted(times)
