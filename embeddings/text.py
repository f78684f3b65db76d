"""The text that is embedded for a movie, and the hash that says whether it changed.

Pure functions over plain dicts: no I/O, so the job, the tests and the benchmark share exactly one
definition of "what a movie means" to the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from core.ids import title_year_from_slug


def _names(value: Any) -> list[str]:
    """Genres or keywords given as 'a|b', ['a', 'b'] or [{'name': 'a'}, ...] -> ['a', 'b']."""
    if value is None:
        return []
    if isinstance(value, str):
        items: Iterable[Any] = value.split("|")
    else:
        items = value
    names = [(item.get("name") if isinstance(item, Mapping) else item) for item in items]
    return [str(n).strip() for n in names if n is not None and str(n).strip()]


def _clean(value: Any) -> str:
    """A free-text field with whitespace collapsed; '' for None or NaN-like blanks."""
    if value is None:
        return ""
    text = " ".join(str(value).split())
    return "" if text.lower() in {"nan", "none", "null"} else text


def movie_text(movie: Mapping[str, Any]) -> str:
    """The one text embedded for a movie: "Title (Year). Genres: a, b. Overview. Tagline. Keywords: x, y."

    Uses `title`, `year`, `genres` ('|'-separated or a list), `overview`, `tagline` and `keywords` when
    present; empty fields are left out so a bare catalog row still gives a clean sentence. A movie the
    parser registered from the stream (no title) is described by the title and year in its slug `id`, so
    it can be embedded before any catalog knows it.
    """
    title = _clean(movie.get("title"))
    year = movie.get("year")
    if not title:
        title, slug_year = title_year_from_slug(str(movie.get("id") or ""))
        year = year or slug_year
    head = f"{title} ({int(year)})" if year not in (None, "") else title
    parts = [head + "."]
    genres = _names(movie.get("genres"))
    if genres:
        parts.append("Genres: " + ", ".join(genres) + ".")
    for key in ("overview", "tagline"):
        text = _clean(movie.get(key))
        if text:
            parts.append(text if text[-1] in ".!?\"'" else text + ".")
    keywords = _names(movie.get("keywords"))
    if keywords:
        parts.append("Keywords: " + ", ".join(keywords) + ".")
    return " ".join(parts)


def content_hash(text: str) -> str:
    """sha256 hex digest of the embedded text: equal hashes mean the stored vector is still right."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chroma_metadata(movie: Mapping[str, Any]) -> dict[str, str | int | float]:
    """The metadata stored beside a vector (title, year, genres, popularity), without empty values.

    Chroma metadata values must be str, int, float or bool, so None and blanks are dropped.
    """
    title, year = _clean(movie.get("title")), movie.get("year")
    if not title:
        title, slug_year = title_year_from_slug(str(movie.get("id") or ""))
        year = year or slug_year
    out: dict[str, str | int | float] = {"title": title}
    if year not in (None, ""):
        out["year"] = int(year)
    genres = _names(movie.get("genres"))
    if genres:
        out["genres"] = "|".join(genres)
    if movie.get("popularity") not in (None, ""):
        out["popularity"] = float(movie["popularity"])
    return out
