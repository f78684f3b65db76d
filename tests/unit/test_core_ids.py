"""core.ids: the slug rule the simulator and the catalog loaders share, and its inverse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ids import claim_unique, display_title, slugify, title_year_from_slug, unique_slugs


@pytest.mark.parametrize(("title", "year", "slug"), [
    ("Toy Story", 1995, "toy+story+1995"),
    ("Deer Hunter, The", 1978, "the+deer+hunter+1978"),
    ("Amélie (Fabuleux destin d'Amélie Poulain, Le)", 2001, "amelie+fabuleux+destin+damelie+poulain+le+2001"),
    ("Schindler's List", 1993, "schindlers+list+1993"),
    ("!!!", None, "untitled"),
])
def test_slugify(title: str, year: int | None, slug: str) -> None:
    assert slugify(title, year) == slug


def test_display_title_moves_a_trailing_article_to_the_front() -> None:
    assert display_title("Deer Hunter, The") == "The Deer Hunter"
    assert display_title("Avventura, L'") == "L'Avventura"
    assert display_title(" Up ") == "Up"


def test_unique_slugs_suffix_duplicates_in_order() -> None:
    assert unique_slugs([(1, "Hamlet", 1990), (2, "Hamlet", 1990), (3, "Hamlet", 1990)]) == {
        1: "hamlet+1990", 2: "hamlet+1990+2", 3: "hamlet+1990+3"}


def test_claim_unique_records_what_it_returns() -> None:
    taken: set[str] = {"up+2009"}
    assert claim_unique("up+2009", taken) == "up+2009+2"
    assert claim_unique("up+2009", taken) == "up+2009+3"
    assert taken == {"up+2009", "up+2009+2", "up+2009+3"}


@pytest.mark.parametrize(("slug", "expected"), [
    ("toy+story+1995", ("toy story", 1995)),
    ("the+lion+king+1994", ("the lion king", 1994)),
    ("hamlet+1990+2", ("hamlet", 1990)),          # uniquing suffix dropped
    ("2001+a+space+odyssey+1968", ("2001 a space odyssey", 1968)),
    ("lost+reels", ("lost reels", None)),
    ("1917+2019", ("1917", 2019)),
])
def test_title_year_from_slug(slug: str, expected: tuple[str, int | None]) -> None:
    assert title_year_from_slug(slug) == expected


words = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=1, max_size=5)


@given(words, st.integers(1890, 2029), st.integers(0, 30))
def test_the_inverse_recovers_title_words_and_year_even_after_uniquing(title_words, year, clashes):
    """Round trip: slugify then title_year_from_slug gives back the words and the year, uniqued or not."""
    title = " ".join(title_words)
    taken: set[str] = set()
    for _ in range(clashes):
        claim_unique(slugify(title, year), taken)
    slug = claim_unique(slugify(title, year), taken)
    assert title_year_from_slug(slug) == (title, year)
