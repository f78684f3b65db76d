"""The HTTP contract through the Flask test client, on fake dependencies (no service needed)."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inference.app import create_app
from inference.openapi import spec
from tests.fixtures.inference import (  # noqa: F401 - fixtures
    POPULAR,
    FakeHistory,
    FakeVectors,
    app_fixture,
    client_fixture,
    make_app,
    sources_fixture,
)

POPULAR_IDS = [m for m, _ in POPULAR]


def line(response) -> list[str]:
    text = response.get_data(as_text=True)
    assert "\n" not in text
    return text.split(",") if text else []


def metric(client: FlaskClient, name: str) -> float:
    """The sum of a metric's samples (all label sets) from /metrics."""
    total = 0.0
    for row in client.get("/metrics").get_data(as_text=True).splitlines():
        if row.startswith(name) and (row[len(name)] in " {"):
            total += float(row.rsplit(" ", 1)[1])
    return total


def assert_one_sentence(response, status: int) -> None:
    assert response.status_code == status
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert text.endswith(".") and "\n" not in text and "Traceback" not in text
    assert 10 < len(text) < 200


def test_personalized_line_is_plain_unique_unseen_and_best_first(client: FlaskClient) -> None:
    response = client.get("/recommend/1")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    ids = line(response)
    assert len(ids) == 20 == len(set(ids))
    assert not {"a+1990", "b+1991", "c+1995"} & set(ids)
    assert ids[:3] == ["a+sequel+1992", "near+a+1993", "near+b+1994"]
    assert "near+c+1996" not in ids and "popular+movie+0+2000" not in ids  # neighbours of a 1-star movie
    assert ids[3:] == [m for m in POPULAR_IDS if m != "popular+movie+0+2000"][:17]


def test_json_format_has_scores_and_reasons(client: FlaskClient) -> None:
    doc = client.get("/recommend/1?format=json").get_json()
    assert doc["kind"] == "personalized" and doc["user_id"] == 1
    assert doc["ids"] == line(client.get("/recommend/1"))
    first = doc["items"][0]
    assert first == {"id": "a+sequel+1992", "score": pytest.approx(first["score"]), "because": "a+1990"}
    assert doc["items"][-1]["because"] is None
    scores = [item["score"] for item in doc["items"]]
    assert scores == sorted(scores, reverse=True)


def test_the_text_answer_is_ranked_without_reasons_and_lists_the_same_ids(client: FlaskClient) -> None:
    """"because" is work only the JSON answer shows: the service skips it for the text line, same ids."""
    rec = client.application.extensions["recommender"]
    bare, full = rec.recommend(1, reasons=False), rec.recommend(1)
    assert [s.movie_id for s in bare.items] == [s.movie_id for s in full.items] == line(client.get("/recommend/1"))
    assert all(s.because is None for s in bare.items) and full.items[0].because == "a+1990"


def test_unknown_user_gets_the_popular_list_and_counts_as_cold_start(client: FlaskClient) -> None:
    before = metric(client, "recommend_cold_start_total")
    assert line(client.get("/recommend/999")) == POPULAR_IDS[:20]
    assert line(client.get("/recommend/0")) == POPULAR_IDS[:20]
    assert metric(client, "recommend_cold_start_total") == before + 2


@pytest.mark.parametrize("bad", [
    "abc", "-1", "+1", " 1", "1 ", "1.0", "0x10", "1e3", "1000000001", "99999999999", "12a",
    "\uff11\uff12",  # fullwidth digits
    "\u0661\u0662",  # arabic-indic digits
    "\u00b2",  # superscript two
    "..", "%2e%2e", "1%00", "x" * 10_000, "1" * 10_000,
])
def test_invalid_user_ids_get_one_plain_sentence(client: FlaskClient, bad: str) -> None:
    response = client.get(f"/recommend/{bad}")
    assert_one_sentence(response, 400)
    assert "not a decimal integer" in response.get_data(as_text=True)


def test_largest_user_id_is_accepted(client: FlaskClient) -> None:
    assert client.get("/recommend/1000000000").status_code == 200


@pytest.mark.parametrize("path", ["/recommend/1/2", "/recommend/", "/recommend/../../etc/passwd", "/nope"])
def test_unknown_paths_get_one_plain_sentence(client: FlaskClient, path: str) -> None:
    assert_one_sentence(client.get(path), 404)


def test_wrong_method_gets_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/recommend/1")
    assert_one_sentence(response, 405)
    assert "GET" in response.headers["Allow"]


def test_bad_format_parameter_is_400(client: FlaskClient) -> None:
    assert_one_sentence(client.get("/recommend/1?format=xml"), 400)


def test_invalid_requests_are_counted(client: FlaskClient) -> None:
    before = metric(client, 'recommend_requests_total{kind="invalid"}')
    client.get("/recommend/abc")
    assert metric(client, 'recommend_requests_total{kind="invalid"}') == before + 1


def test_batch_returns_a_map_and_fetches_missing_neighbours_together(
        client: FlaskClient, sources: tuple[FakeHistory, FakeVectors]) -> None:
    _, vectors = sources
    response = client.post("/recommend", json={"user_ids": [1, "2", 77]})
    assert response.status_code == 200
    doc = response.get_json()
    assert set(doc) == {"1", "2", "77"}
    assert doc["1"] == line(client.get("/recommend/1"))
    assert doc["77"] == POPULAR_IDS[:20]
    assert "popular+movie+1+2000" not in doc["2"]
    assert vectors.queries[0] == ["a+1990", "b+1991", "c+1995", "popular+movie+1+2000"]


@pytest.mark.parametrize("body", [
    {"user_ids": []}, {"user_ids": "1"}, {"ids": [1]}, [1, 2], {"user_ids": [1, -3]},
    {"user_ids": [True]}, {"user_ids": [1.5]}, {"user_ids": list(range(1001))},
])
def test_bad_batches_get_one_plain_sentence(client: FlaskClient, body: object) -> None:
    assert_one_sentence(client.post("/recommend", json=body), 400)


def test_batch_that_is_not_json_is_400(client: FlaskClient) -> None:
    assert_one_sentence(client.post("/recommend", data="user_ids=1", content_type="text/plain"), 400)
    assert_one_sentence(client.post("/recommend", data="{not json", content_type="application/json"), 400)


def test_sql_down_serves_popular_from_memory_and_ready_degrades(
        client: FlaskClient, sources: tuple[FakeHistory, FakeVectors]) -> None:
    history, _ = sources
    assert line(client.get("/recommend/1"))  # warms the popular list
    assert client.get("/ready").status_code == 200
    assert metric(client, "recommender_ready") == 1
    history.up = False
    before = metric(client, 'recommend_fallback_total{reason="sql"}')
    for _ in range(3):
        response = client.get("/recommend/1")
        assert response.status_code == 200
        assert line(response) == POPULAR_IDS[:20]
    assert metric(client, 'recommend_fallback_total{reason="sql"}') == before + 3
    assert metric(client, "recommender_ready") == 0  # set by the failing requests, before any /ready
    ready = client.get("/ready")
    assert ready.status_code == 503
    doc = ready.get_json()
    assert doc["status"] == "degraded" and "sql" in doc["reason"]
    assert metric(client, "recommender_ready") == 0
    history.up = True
    assert client.get("/ready").status_code == 200
    assert metric(client, "recommender_ready") == 1


def test_vectors_down_serves_popular_without_seen_movies(
        client: FlaskClient, sources: tuple[FakeHistory, FakeVectors]) -> None:
    _, vectors = sources
    vectors.up = False
    response = client.get("/recommend/2?format=json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["kind"] == "fallback"
    assert doc["ids"] == [m for m in POPULAR_IDS if m != "popular+movie+1+2000"][:20]
    assert metric(client, 'recommend_fallback_total{reason="vectors"}') == 1
    ready = client.get("/ready").get_json()
    assert ready["status"] == "degraded" and "vectors" in ready["reason"]


def test_both_down_from_the_start_still_answers_200(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    history, vectors = FakeHistory(up=False), FakeVectors(up=False)
    client = make_app(history, vectors).test_client()
    response = client.get("/recommend/5")
    assert response.status_code == 200 and response.get_data(as_text=True) == ""
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["status"] == "unavailable"
    assert client.get("/model/info").get_json()["catalog_size"] is None


def test_unexpected_error_in_ranking_still_answers_with_popular(
        client: FlaskClient, sources: tuple[FakeHistory, FakeVectors]) -> None:
    history, _ = sources
    client.get("/recommend/999")
    history.histories[3] = [("a+1990", "five")]  # type: ignore[list-item]  # a corrupt rating
    response = client.get("/recommend/3")
    assert response.status_code == 200
    assert line(response) == POPULAR_IDS[:20]
    assert metric(client, 'recommend_fallback_total{reason="error"}') == 1
    assert "Traceback" not in response.get_data(as_text=True)


def test_neighbour_lists_are_cached_until_the_collection_version_changes(
        client: FlaskClient, sources: tuple[FakeHistory, FakeVectors]) -> None:
    _, vectors = sources
    client.get("/recommend/1")
    client.get("/recommend/1")
    assert len(vectors.queries) == 1
    assert metric(client, "neighbour_cache_hits_total") == 3
    assert metric(client, "neighbour_cache_misses_total") == 3
    vectors.version_value = "v2"
    vectors.lists["a+1990"] = [("brand+new+2020", 0.99)]
    assert line(client.get("/recommend/1"))[0] == "brand+new+2020"
    assert len(vectors.queries) == 2


def test_similar_movies(client: FlaskClient, sources: tuple[FakeHistory, FakeVectors]) -> None:
    assert line(client.get("/similar/a+1990?k=2")) == ["a+sequel+1992", "b+1991"]
    doc = client.get("/similar/a+1990?format=json").get_json()
    assert doc["items"][0] == {"id": "a+sequel+1992", "blended_similarity": 0.95}
    assert_one_sentence(client.get("/similar/unknown+2000"), 404)
    assert_one_sentence(client.get("/similar/Bad Id"), 400)
    assert_one_sentence(client.get("/similar/a+1990?k=0"), 400)
    sources[1].up = False
    assert_one_sentence(client.get("/similar/a+1990"), 503)


def test_health_model_info_and_openapi(client: FlaskClient) -> None:
    assert client.get("/health").get_json() == {"status": "ok"}
    info = client.get("/model/info").get_json()
    assert info["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert list(info["collection_versions"].values()) == ["v1"] and info["catalog_size"] == 4
    assert info["revision"] == "test-revision"
    assert info["config"]["rank"]["n_results"] == 20 and info["config"]["rank"]["history_size"] == 50
    doc = client.get("/openapi.json").get_json()
    assert doc == json.loads(json.dumps(spec()))
    routes = {rule.rule.replace("<", "{").replace(">", "}") for rule in client.application.url_map.iter_rules()
              if rule.endpoint != "static"}
    assert routes == set(doc["paths"])


def test_metrics_use_the_contract_names_and_bounded_path_labels(client: FlaskClient) -> None:
    client.get("/recommend/1")
    client.get("/recommend/12345")
    text = client.get("/metrics").get_data(as_text=True)
    for name in ("flask_http_request_duration_seconds_bucket", "flask_http_request_total",
                 "recommend_latency_seconds_bucket", "recommend_fallback_total", "recommend_cold_start_total",
                 "recommend_requests_total", "neighbour_cache_hits_total", "neighbour_cache_misses_total",
                 "recommender_ready"):
        assert name in text, name
    assert 'path="/recommend/<user_id>"' in text
    assert "12345" not in text


def samples(client: FlaskClient) -> dict[str, float]:
    """Every sample line of /metrics, name{labels} -> value."""
    rows = client.get("/metrics").get_data(as_text=True).splitlines()
    return {row.rsplit(" ", 1)[0]: float(row.rsplit(" ", 1)[1]) for row in rows if row and not row.startswith("#")}


def test_http_metrics_count_each_answer_by_route_template_but_not_metrics_itself(client: FlaskClient) -> None:
    for path in ("/recommend/1", "/recommend/2", "/recommend/abc", "/no/such/endpoint"):
        client.get(path)
    client.get("/metrics")
    got = samples(client)
    assert got['flask_http_request_total{method="GET",status="200"}'] == 2
    assert got['flask_http_request_total{method="GET",status="400"}'] == 1
    assert got['flask_http_request_total{method="GET",status="404"}'] == 1
    count = 'flask_http_request_duration_seconds_count{method="GET",path="%s",status="%s"}'
    assert got[count % ("/recommend/<user_id>", "200")] == 2
    assert got[count % ("/recommend/<user_id>", "400")] == 1
    assert got[count % ("<unmatched>", "404")] == 1
    assert not any('path="/metrics"' in name for name in got)
    buckets = [v for k, v in got.items() if k.startswith("flask_http_request_duration_seconds_bucket")
               and 'path="/recommend/<user_id>",status="200"' in k]
    assert len(buckets) == 14 and max(buckets) == 2  # the shared LATENCY_BUCKETS and +Inf


def test_http_metrics_keep_counting_past_the_bound_combinations() -> None:
    from prometheus_client import CollectorRegistry

    from inference.metrics import HttpMetrics

    http = HttpMetrics(CollectorRegistry(), max_bound=2)
    for method in ("GET", "POST", "PUT", "PUT"):
        http.observe(method, "/recommend", 200, 0.001)
    assert len(http._bound) == 2
    assert http.total.labels("PUT", "200")._value.get() == 2


def test_request_id_is_honoured_or_generated_and_access_log_is_json(
        client: FlaskClient, capfd: pytest.CaptureFixture) -> None:
    capfd.readouterr()
    response = client.get("/recommend/1", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/recommend/1", headers={"X-Request-ID": "bad id\twith spaces"})
    assert generated.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(generated.headers["X-Request-ID"]) == 32
    lines = [json.loads(row) for row in capfd.readouterr().err.splitlines() if row.startswith("{")]
    access = [row for row in lines if row["logger"] == "inference.access"]
    assert access[0]["request_id"] == "abc-123" and access[0]["status"] == 200
    assert access[0]["path"] == "/recommend/1" and access[0]["latency_ms"] >= 0
    assert access[1]["request_id"] == generated.headers["X-Request-ID"]


def test_create_app_reads_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("RECOMMEND_HISTORY_SIZE", "7")
    monkeypatch.setenv("GIT_SHA", "cafe123")
    monkeypatch.setenv("POPULAR_SNAPSHOT", "")
    app: Flask = create_app({"HISTORY_SOURCE": FakeHistory(), "VECTORS_FACTORY": FakeVectors})
    assert app.config["SETTINGS"].rank.history_size == 7
    assert app.config["REVISION"] == "cafe123"


def test_worker_start_warms_the_neighbour_cache_with_popular_movies(
        sources: tuple[FakeHistory, FakeVectors], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    history, vectors = sources
    history.popular_list.insert(0, ("a+1990", 5000))
    app = make_app(history, vectors, warm_neighbours=3)
    rec = app.extensions["recommender"]
    rec.warm(background=False)
    assert vectors.queries == [["a+1990", "popular+movie+0+2000", "popular+movie+1+2000"]]
    assert len(rec.neighbour_cache) == 3
    app.test_client().get("/recommend/2")
    assert len(vectors.queries) == 1  # user 2's only movie was warmed
