"""The simulator's log line formats and movie-id slugs (pure functions).

    <time>,<userid>,GET /data/m/<movieid>/<minute>.mpg
    <time>,<userid>,GET /rate/<movieid>=<rating>
    <time>,<userid>,recommendation request <server>, status <code>, result: <id, id, ...>, <N> ms
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime

from data_parsing.parser import RateEvent, RecommendationEvent, WatchEvent

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<article>the|a|an|les|la|le|il|el|die|der|das|l')$", re.IGNORECASE)


# The line formats themselves belong to the parser (its events re-serialise to the canonical line); the
# simulator writes through them so that what it writes and what the parser reads cannot drift apart.


def watch_line(ts: datetime, user_id: int, movie_id: str, minute: int) -> str:
    return WatchEvent(ts.replace(microsecond=0), user_id, movie_id, minute).to_line()


def rate_line(ts: datetime, user_id: int, movie_id: str, rating: int) -> str:
    return RateEvent(ts.replace(microsecond=0), user_id, movie_id, rating).to_line()


def recommendation_line(ts: datetime, user_id: int, server: str, status: int, movie_ids: Iterable[str],
                        latency_ms: float) -> str:
    return RecommendationEvent(ts.replace(microsecond=0), user_id, server, status, tuple(movie_ids),
                               float(latency_ms)).to_line()


def display_title(title: str) -> str:
    """MovieLens-style ``Deer Hunter, The`` becomes ``The Deer Hunter``; other titles are unchanged."""
    match = _ARTICLE.match(title.strip())
    if not match:
        return title.strip()
    article = match["article"]
    sep = "" if article.endswith("'") else " "
    return f"{article}{sep}{match['rest']}"


def slugify(title: str, year: int | None) -> str:
    """A movie id as the simulator writes them: lower-case ASCII words of the title and the year joined by
    ``+``, e.g. ``toy+story+1995``. Accents are folded, every other character separates words."""
    ascii_title = unicodedata.normalize("NFKD", display_title(title)).encode("ascii", "ignore").decode()
    words = _NOT_SLUG.sub("+", ascii_title.lower().replace("'", "")).strip("+")
    parts = [p for p in (words, str(year) if year else "") if p]
    return "+".join(parts) or "untitled"


def unique_slugs(keys_titles_years: Iterable[tuple[object, str, int | None]]) -> dict[object, str]:
    """Slugs for (key, title, year) rows, made unique in input order with ``+2``, ``+3``... suffixes."""
    taken: set[str] = set()
    out: dict[object, str] = {}
    for key, title, year in keys_titles_years:
        base = slug = slugify(title, year)
        n = 2
        while slug in taken:
            slug = f"{base}+{n}"
            n += 1
        taken.add(slug)
        out[key] = slug
    return out
