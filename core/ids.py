"""Movie ids: the one rule that turns a title and a year into the stream's slug, and its inverse.

The simulator writes movie ids as slugs (`toy+story+1995`); the catalog loaders make the same slugs from
titles, and the embedding text recovers a readable title from a slug. All of them use these functions, so
the ids a catalog gives and the ids the stream carries cannot drift apart. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Iterable
from typing import TypeVar

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<article>the|a|an|les|la|le|il|el|die|der|das|l')$", re.IGNORECASE)
_YEAR = re.compile(r"^(18[89]\d|19\d\d|20\d\d)$")
K = TypeVar("K", bound=Hashable)


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


def claim_unique(slug: str, taken: set[str]) -> str:
    """`slug`, or the first of ``slug+2``, ``slug+3``... not in `taken`; the result is added to `taken`."""
    base, n = slug, 2
    while slug in taken:
        slug, n = f"{base}+{n}", n + 1
    taken.add(slug)
    return slug


def unique_slugs(keys_titles_years: Iterable[tuple[K, str, int | None]]) -> dict[K, str]:
    """Slugs for (key, title, year) rows, made unique in input order with ``+2``, ``+3``... suffixes."""
    taken: set[str] = set()
    return {key: claim_unique(slugify(title, year), taken) for key, title, year in keys_titles_years}


def title_year_from_slug(slug: str) -> tuple[str, int | None]:
    """Recover a readable title and the year from a stream slug: `toy+story+1995` -> ("toy story", 1995).

    The inverse of `slugify` as far as a slug allows: lower-case title words and the year joined by '+',
    uniqued with a trailing `+2`, `+3`... (`claim_unique`); that suffix is dropped. A slug without a
    recognisable year gives (all words, None).
    """
    words = [w for w in slug.replace("%20", "+").split("+") if w]
    if len(words) >= 3 and words[-1].isdigit() and len(words[-1]) <= 2 and _YEAR.match(words[-2]):
        words = words[:-1]
    if len(words) >= 2 and _YEAR.match(words[-1]):
        return " ".join(words[:-1]), int(words[-1])
    return " ".join(words), None
