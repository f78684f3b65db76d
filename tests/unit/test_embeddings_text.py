"""movie -> embedded text, its hash and Chroma metadata (slugs: test_core_ids.py)."""


from embeddings.text import chroma_metadata, content_hash, movie_text


def test_movie_text_uses_every_present_field_in_order():
    text = movie_text({
        "id": "toy+story+1995", "title": "Toy Story", "year": 1995, "genres": "Animation|Comedy",
        "overview": "Toys come alive", "tagline": "The adventure takes off!",
        "keywords": ["toy", "friendship"],
    })
    assert text == ("Toy Story (1995). Genres: Animation, Comedy. Toys come alive. The adventure takes off! "
                    "Keywords: toy, friendship.")


def test_movie_text_skips_blank_fields():
    assert movie_text({"id": "x", "title": "Heat", "year": None, "genres": "", "overview": None,
                       "tagline": "nan"}) == "Heat."


def test_movie_text_accepts_genre_dicts():
    assert "Genres: Drama, War." in movie_text({"title": "A", "genres": [{"id": 1, "name": "Drama"},
                                                                          {"id": 2, "name": "War"}]})


def test_untitled_stream_movie_is_described_by_its_slug():
    assert movie_text({"id": "toy+story+1995", "title": None, "year": None}) == "toy story (1995)."


def test_content_hash_is_sha256_of_text_and_changes_with_it():
    a = content_hash(movie_text({"title": "Heat", "year": 1995, "overview": "A thief."}))
    assert a == content_hash(movie_text({"title": "Heat", "year": 1995, "overview": "A thief."}))
    assert len(a) == 64 and int(a, 16) >= 0
    assert a != content_hash(movie_text({"title": "Heat", "year": 1995, "overview": "A cop."}))


def test_chroma_metadata_drops_empty_values():
    assert chroma_metadata({"id": "heat+1995", "title": "Heat", "year": 1995, "genres": "Action|Crime",
                            "popularity": None}) == {"title": "Heat", "year": 1995, "genres": "Action|Crime"}
    assert chroma_metadata({"id": "toy+story+1995", "title": None, "year": None, "popularity": 2}) == {
        "title": "toy story", "year": 1995, "popularity": 2.0}
