"""Catalog loaders: demo CSV, Kaggle movies_metadata.csv, movie API JSON -> plain movie dicts."""

import json
import os
from datetime import date

import pytest

from embeddings.catalog import CatalogError, LoadStats, api_json_to_movie, load_csv, load_kaggle

DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def test_demo_catalog_loads_every_row():
    stats = LoadStats()
    movies = list(load_csv(os.path.join(DATA, "small_catalog.csv"), stats))
    assert stats.loaded == len(movies) == 30 and stats.skipped_total == 0
    toy = next(m for m in movies if m["id"] == "toy+story+1995")
    assert toy["title"] == "Toy Story" and toy["year"] == 1995
    assert toy["genres"] == "Animation|Children|Comedy"
    assert toy["popularity"] == 21.9 and toy["tagline"] == "The adventure takes off!"
    assert toy["vote_count"] is None and toy["release_date"] is None
    assert next(m for m in movies if m["id"] == "schindlers+list+1993")["title"] == "Schindler's List"


def test_minimal_catalog_with_bad_rows_skips_and_counts_them(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("id,title,year,genres\n"
                    "heat+1995,Heat,1995,Action|Crime\n"
                    ",No Id,2000,Drama\n"
                    "odd+year,Odd Year,nineteen,Drama\n"
                    "lost+reels,Lost Reels,,\n")
    stats = LoadStats()
    movies = list(load_csv(str(path), stats))
    assert [m["id"] for m in movies] == ["heat+1995", "lost+reels"]
    assert movies[1]["year"] is None and movies[1]["genres"] is None
    assert stats.skipped == {"bad row: blank id or title": 1, "bad number": 1}


def test_catalog_without_required_columns_is_rejected(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("id,name\nx,y\n")
    with pytest.raises(CatalogError, match="lacks the column"):
        list(load_csv(str(path)))
    with pytest.raises(CatalogError, match="does not exist"):
        list(load_csv(str(tmp_path / "missing.csv")))


def test_kaggle_layout_skips_broken_rows_and_slugs_ids():
    stats = LoadStats()
    movies = list(load_kaggle(os.path.join(DATA, "kaggle_movies_metadata.csv"), stats))
    ids = [m["id"] for m in movies]
    assert ids == ["toy+story+1995", "jumanji+1995", "hamlet+1990", "hamlet+1990+2", "lost+reels"]
    assert stats.loaded == 5
    assert stats.skipped == {"non-numeric id": 1, "duplicate id": 1, "genres not a list": 1, "bad number": 1}
    toy = movies[0]
    assert toy["genres"] == "Animation|Comedy|Family"
    assert (toy["year"], toy["runtime"], toy["vote_count"], toy["popularity"]) == (1995, 81, 5415, 21.946943)
    assert "\n" in movies[1]["overview"]  # a quoted line break inside a field is not a broken row
    assert "tmdb_id" not in toy and toy["release_date"] == date(1995, 10, 30)


def test_api_json_maps_tmdb_fields_and_keywords():
    with open(os.path.join(DATA, "movie_api", "toy+story+1995.json"), encoding="utf-8") as handle:
        movie = api_json_to_movie("toy+story+1995", json.load(handle))
    assert movie["title"] == "Toy Story" and movie["year"] == 1995
    assert movie["genres"] == "Animation|Comedy|Family"
    assert movie["keywords"] == "jealousy|toy|boy|friendship"
    assert (movie["runtime"], movie["vote_average"]) == (81, 7.7)
    with pytest.raises(ValueError, match="no title"):
        api_json_to_movie("x", {"title": "", "genres": []})
