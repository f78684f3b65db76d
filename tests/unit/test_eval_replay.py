"""The replay simulator against a stub of the service (a test double returning fixed lists)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from data_parsing.parser import RateEvent, RecommendationEvent, WatchEvent, parse
from evaluation.simulator import replay as rp
from evaluation.simulator.__main__ import main
from tests.fixtures.services import free_port, http_server

FIXED = ["m1", "m2", "m3"]


@pytest.fixture
def stub_url() -> Iterator[str]:
    """GET /recommend/<user> -> "m1,m2,m3" (user 13 gets a 500), on a free 127.0.0.1 port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/recommend/13":
                self.send_response(500)
                self.end_headers()
                return
            body = ",".join(FIXED).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    with http_server(Handler) as url:
        yield url


def test_choose_prefers_the_best_ranked_recommended_future_movie() -> None:
    future = [("a", 3), ("m2", 5), ("m1", 4)]
    assert rp.choose(["x", "m1", "m2"], future) == (2, True)
    assert rp.choose(["x", "y"], future) == (0, False)


def test_replay_writes_parsable_lines_and_converts_when_the_future_is_recommended(stub_url, tmp_path: Path) -> None:
    futures = {7: [("z", 2), ("m2", 5)], 8: [("q", 4)], 13: [("m1", 3)]}
    out = tmp_path / "replay.log"
    sink = rp.open_sink(f"file:{out}")
    stats = rp.replay(stub_url, futures, sink, rp.ReplayConfig(minutes=2), start=datetime(2026, 1, 1))
    sink.close()
    events = [parse(line) for line in out.read_text().splitlines()]
    assert all(isinstance(e, WatchEvent | RateEvent | RecommendationEvent) for e in events)
    recs = [e for e in events if isinstance(e, RecommendationEvent)]
    assert [(e.user_id, e.status) for e in recs] == [(7, 200), (8, 200), (13, 500), (7, 200)]
    assert recs[0].movie_ids == tuple(FIXED) and recs[2].movie_ids == ()
    rates = [(e.user_id, e.movie_id, e.rating) for e in events if isinstance(e, RateEvent)]
    # user 7 is recommended m2 (in its future) first, then plays z; 8 plays q; 13's failed request plays m1
    assert rates == [(7, "m2", 5), (8, "q", 4), (13, "m1", 3), (7, "z", 2)]
    # one conversion: 7's m2; 13's m1 is in the fixed list, but its request failed, so nothing was shown
    assert (stats.requests, stats.errors, stats.conversions) == (4, 1, 1)
    assert stats.lines == len(events) == 4 * (1 + 2 + 1)


def test_replay_is_bounded_by_requests_and_survives_an_unreachable_service(tmp_path: Path) -> None:
    futures = {u: [(f"m{i}", 3) for i in range(50)] for u in range(1, 6)}
    sink = rp.open_sink(f"file:{tmp_path / 'x.log'}")
    stats = rp.replay(f"http://127.0.0.1:{free_port()}", futures, sink, rp.ReplayConfig(max_requests=7, timeout=0.5))
    sink.close()
    assert stats.requests == 7 and stats.errors == 7 and stats.conversions == 0
    assert "status 0, result: ," in (tmp_path / "x.log").read_text()


def test_cli_replays_movielens_users_and_rejects_a_bad_target(stub_url, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.log"
    assert main(["replay", "--url", stub_url, "--to", f"file:{out}", "--users", "3", "--max-requests", "5",
                 "--max-seconds", "30"]) == 0
    assert '"requests": 5' in capsys.readouterr().out
    assert sum(1 for line in out.read_text().splitlines() if "recommendation request" in line) == 5
    assert main(["replay", "--url", stub_url, "--to", "ftp://nowhere", "--users", "1"]) == 1
    assert "--to must be" in capsys.readouterr().err
