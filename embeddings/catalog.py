"""Catalog sources: each yields plain movie dicts ready for `db_utils.queries.upsert_movies`.

- `load_csv`: the demo `catalog.csv` (header with at least id,title,year,genres; optional overview,
  tagline, popularity, vote_average, vote_count, release_date, runtime, original_language).
- `load_kaggle`: Kaggle "The Movies Dataset" `movies_metadata.csv` (genres as a Python-literal list of
  {id, name}); its known broken rows (shifted columns, non-numeric ids) are skipped and counted.
- `fetch_api`: the simulator's movie API (`MOVIE_API_URL/movie/<id>`, TMDB-like JSON), with timeouts,
  retries with backoff, bounded concurrency and an on-disk JSON cache.

Rows that cannot be read are never fatal: they are counted in a `LoadStats` with a reason, so a bad line
loses only itself. A file that is not a catalog at all (missing, wrong header) raises `CatalogError`.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from core.ids import claim_unique, slugify

log = logging.getLogger(__name__)

CSV_REQUIRED = ("id", "title", "year", "genres")
CSV_OPTIONAL = ("overview", "tagline", "popularity", "vote_average", "vote_count", "release_date",
                "runtime", "original_language")
Movie = dict[str, Any]


class CatalogError(ValueError):
    """The catalog as a whole cannot be read (missing file, wrong header, unknown source)."""


@dataclass
class LoadStats:
    """How many rows a loader yielded and how many it skipped, by reason."""

    loaded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


# --- small pure parsers ---------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    """A stripped string, or None for blanks."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    """int/float from a CSV cell or JSON value; None for blanks; ValueError for garbage."""
    text = _text(value)
    if text is None:
        return None
    number = float(text)
    if number != number:  # NaN
        return None
    return int(number) if kind is int else number


def _date(value: Any) -> date | None:
    """date(1995, 10, 30) from '1995-10-30'; None when absent or malformed (the column is a DATE)."""
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _year_of(release_date: date | None) -> int | None:
    return release_date.year if release_date else None


def _genre_names(value: Any) -> str | None:
    """'Animation|Comedy' from a list of {id, name}, a list of names, or a '|' string."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [n.strip() for n in value.split("|")]
    else:
        names = [str(g.get("name") if isinstance(g, Mapping) else g).strip() for g in value]
    names = [n for n in names if n and n != "None"]
    return "|".join(names) or None


def _open_csv(path: str, required: Iterable[str]) -> tuple[Any, csv.DictReader]:
    """Open a CSV and check its header, raising CatalogError with one clear sentence."""
    if not os.path.isfile(path):
        raise CatalogError(f"catalog file {path} does not exist.")
    handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed by the caller's finally
    reader = csv.DictReader(handle)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        handle.close()
        raise CatalogError(f"catalog file {path} lacks the column(s) {', '.join(missing)}.")
    return handle, reader


def _details(source: Mapping[str, Any]) -> Movie:
    """The descriptive fields every source shares (overview ... release_date), from CSV cells or JSON.

    Raises ValueError("bad number") when a numeric field holds garbage."""
    try:
        numbers = {
            "popularity": _number(source.get("popularity"), float),
            "vote_average": _number(source.get("vote_average"), float),
            "vote_count": _number(source.get("vote_count"), int),
            "runtime": _number(source.get("runtime"), int),
        }
    except ValueError:
        raise ValueError("bad number") from None
    return {
        "overview": _text(source.get("overview")),
        "tagline": _text(source.get("tagline")),
        **numbers,
        "original_language": _text(source.get("original_language")),
        "release_date": _date(source.get("release_date")),
    }


# --- demo catalog.csv -----------------------------------------------------------------------------

def csv_row_to_movie(row: Mapping[str, Any]) -> Movie:
    """One demo catalog row -> movie dict; ValueError when id/title are blank or numbers are garbage."""
    movie_id, title = _text(row.get("id")), _text(row.get("title"))
    if movie_id is None or title is None:
        raise ValueError("blank id or title")
    details = _details(row)
    try:
        year = _number(row.get("year"), int)
    except ValueError:
        raise ValueError("bad number") from None
    return {
        "id": movie_id,
        "title": title,
        "year": year if year is not None else _year_of(details["release_date"]),
        "genres": _genre_names(_text(row.get("genres"))),
        **details,
    }


def load_csv(path: str, stats: LoadStats | None = None) -> Iterator[Movie]:
    """Movies of a demo catalog.csv; unreadable rows are skipped and counted in `stats`."""
    stats = stats if stats is not None else LoadStats()
    handle, reader = _open_csv(path, CSV_REQUIRED)
    try:
        for row in reader:
            try:
                movie = csv_row_to_movie(row)
            except ValueError as exc:
                stats.skip(f"bad row: {exc}" if "blank" in str(exc) else str(exc))
                continue
            stats.loaded += 1
            yield movie
    finally:
        handle.close()


# --- Kaggle movies_metadata.csv -------------------------------------------------------------------

KAGGLE_REQUIRED = ("id", "title", "genres", "overview", "release_date")


def kaggle_row_to_movie(row: Mapping[str, Any]) -> Movie:
    """One movies_metadata.csv row -> movie dict (id is the slug of title+year; `tmdb_id` kept aside).

    Raises ValueError for the dataset's broken rows: a non-numeric id (columns shifted by a stray
    newline in the overview), a blank title, or genres that are not a Python-literal list.
    """
    tmdb_id = _text(row.get("id"))
    if tmdb_id is None or not tmdb_id.isdigit():
        raise ValueError("non-numeric id")
    title = _text(row.get("title"))
    if title is None:
        raise ValueError("blank title")
    genres_raw = _text(row.get("genres")) or "[]"
    try:
        genres = ast.literal_eval(genres_raw)
    except (ValueError, SyntaxError):
        raise ValueError("genres not a list") from None
    if not isinstance(genres, list):
        raise ValueError("genres not a list")
    details = _details(row)
    year = _year_of(details["release_date"])
    return {
        "id": slugify(title, year),
        "tmdb_id": tmdb_id,
        "title": title,
        "year": year,
        "genres": _genre_names(genres),
        **details,
    }


def load_kaggle(path: str, stats: LoadStats | None = None) -> Iterator[Movie]:
    """Movies of a Kaggle movies_metadata.csv, broken rows skipped and counted.

    The dataset repeats some TMDB ids (skipped as duplicates); two different films with the same
    title and year get the simulator's unique suffix `+2`, `+3`... in file order.
    """
    stats = stats if stats is not None else LoadStats()
    handle, reader = _open_csv(path, KAGGLE_REQUIRED)
    seen_tmdb: set[str] = set()
    taken: set[str] = set()
    try:
        for row in reader:
            try:
                movie = kaggle_row_to_movie(row)
            except ValueError as exc:
                stats.skip(str(exc))
                continue
            if movie["tmdb_id"] in seen_tmdb:
                stats.skip("duplicate id")
                continue
            seen_tmdb.add(movie.pop("tmdb_id"))
            movie["id"] = claim_unique(movie["id"], taken)  # the simulator's rule (core.ids.unique_slugs)
            stats.loaded += 1
            yield movie
    finally:
        handle.close()


# --- the simulator's movie API --------------------------------------------------------------------

def api_json_to_movie(movie_id: str, payload: Mapping[str, Any]) -> Movie:
    """A TMDB-like movie API answer -> movie dict under the stream's id; ValueError without a title."""
    title = _text(payload.get("title")) or _text(payload.get("original_title"))
    if title is None:
        raise ValueError("no title")
    details = _details(payload)
    keywords = payload.get("keywords")
    if isinstance(keywords, Mapping):  # TMDB's append_to_response shape: {"keywords": [{id, name}]}
        keywords = keywords.get("keywords")
    return {
        "id": movie_id,
        "title": title,
        "year": _year_of(details["release_date"]),
        "genres": _genre_names(payload.get("genres") or []),
        **details,
        "keywords": _genre_names(keywords) if keywords else None,
    }


class NotFound(Exception):
    """The movie API does not know this id (HTTP 404 or a {"message": ...} answer)."""


@dataclass(frozen=True)
class MovieApi:
    """HTTP client of `GET <base_url>/movie/<id>` with timeout, retries with jittered exponential backoff
    (5xx, 429, timeouts, refused connections; other 4xx are final) and an on-disk cache of answers."""

    base_url: str
    cache_dir: str | None = None
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.2
    workers: int = 8

    def _cache_path(self, movie_id: str) -> str | None:
        if not self.cache_dir:
            return None
        name = hashlib.sha256(movie_id.encode("utf-8")).hexdigest()[:32]
        return os.path.join(self.cache_dir, name[:2], name + ".json")

    def fetch(self, movie_id: str) -> dict[str, Any]:
        """The JSON answer for one movie, from the cache or the API; NotFound or the last error otherwise."""
        path = self._cache_path(movie_id)
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        url = f"{self.base_url.rstrip('/')}/movie/{urllib.parse.quote(movie_id, safe='+')}"
        payload = self._get_with_retries(url)
        if not isinstance(payload, dict) or ("title" not in payload and "message" in payload):
            raise NotFound(movie_id)
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(payload, handle)
            os.replace(tmp, path)  # atomic: a crash never leaves half a cache file
        return payload

    def _get_with_retries(self, url: str) -> Any:
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise NotFound(url) from None
                if (exc.code != 429 and exc.code < 500) or attempt == self.retries:
                    raise
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == self.retries:
                    raise
            time.sleep(self.backoff * (2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def fetch_many(self, movie_ids: Iterable[str], stats: LoadStats | None = None) -> Iterator[Movie]:
        """Movie dicts for `movie_ids`, at most `workers` requests in flight; failures counted, not fatal."""
        stats = stats if stats is not None else LoadStats()
        ids = list(dict.fromkeys(movie_ids))

        def one(movie_id: str) -> tuple[str, Movie | None, str | None]:
            try:
                return movie_id, api_json_to_movie(movie_id, self.fetch(movie_id)), None
            except NotFound:
                return movie_id, None, "not found"
            except ValueError as exc:
                return movie_id, None, f"bad answer: {exc}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                log.warning({"event": "movie_api_error", "movie_id": movie_id, "error": str(exc)})
                return movie_id, None, "unreachable"

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="movie-api") as pool:
            for _movie_id, movie, reason in pool.map(one, ids):
                if movie is None:
                    stats.skip(reason or "error")
                    continue
                stats.loaded += 1
                yield movie
