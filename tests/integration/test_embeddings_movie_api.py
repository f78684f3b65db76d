"""MovieApi against a local HTTP server serving recorded TMDB-like JSON: retries, 404s, cache, concurrency."""

import urllib.error

import pytest

from embeddings.catalog import LoadStats, MovieApi

pytestmark = pytest.mark.integration


def test_fetch_many_maps_answers_and_counts_missing(movie_api, tmp_path):
    api = MovieApi(movie_api.url, cache_dir=str(tmp_path), backoff=0.01)
    stats = LoadStats()
    movies = {m["id"]: m for m in api.fetch_many(["toy+story+1995", "heat+1995", "unknown+2001",
                                                   "no+title+2000"], stats)}
    assert set(movies) == {"toy+story+1995", "heat+1995"}
    assert movies["heat+1995"]["tagline"] == "A Los Angeles Crime Saga"
    assert movies["toy+story+1995"]["keywords"] == "jealousy|toy|boy|friendship"
    assert stats.loaded == 2 and stats.skipped == {"not found": 1, "bad answer: no title": 1}
    assert movie_api.requests["unknown+2001"] == 1  # a 404 is final: no retries


def test_server_errors_are_retried_with_backoff(movie_api):
    movie_api.fail_first["heat+1995"] = 2
    api = MovieApi(movie_api.url, retries=3, backoff=0.01)
    assert api.fetch("heat+1995")["title"] == "Heat"
    assert movie_api.requests["heat+1995"] == 3


def test_retries_are_bounded(movie_api):
    movie_api.fail_first["heat+1995"] = 10
    api = MovieApi(movie_api.url, retries=2, backoff=0.01)
    with pytest.raises(urllib.error.HTTPError):
        api.fetch("heat+1995")
    assert movie_api.requests["heat+1995"] == 3
    stats = LoadStats()
    assert list(api.fetch_many(["heat+1995"], stats)) == [] and stats.skipped == {"unreachable": 1}


def test_timeouts_are_retried_then_reported(movie_api):
    movie_api.delay = 0.5
    api = MovieApi(movie_api.url, timeout=0.1, retries=1, backoff=0.01)
    stats = LoadStats()
    assert list(api.fetch_many(["heat+1995"], stats)) == []
    assert stats.skipped == {"unreachable": 1} and movie_api.requests["heat+1995"] == 2


def test_answers_are_cached_on_disk(movie_api, tmp_path):
    api = MovieApi(movie_api.url, cache_dir=str(tmp_path))
    first = api.fetch("the+lion+king+1994")
    offline = MovieApi("http://127.0.0.1:9", cache_dir=str(tmp_path), retries=0)
    assert offline.fetch("the+lion+king+1994") == first
    api.fetch("the+lion+king+1994")
    assert movie_api.requests["the+lion+king+1994"] == 1


def test_concurrency_is_bounded(movie_api):
    movie_api.delay = 0.05
    api = MovieApi(movie_api.url, workers=3)
    ids = [f"missing+{i}" for i in range(12)] + ["heat+1995"]
    stats = LoadStats()
    assert [m["id"] for m in api.fetch_many(ids, stats)] == ["heat+1995"]
    assert 1 < movie_api.max_in_flight <= 3
