"""The hand-written OpenAPI 3 description of every endpoint (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

TEXT_ERROR = {"description": "One plain sentence saying what is wrong.",
              "content": {"text/plain": {"schema": {"type": "string"}}}}
ID_LINE = {"type": "string", "pattern": r"^([a-z0-9][a-z0-9+]*(,[a-z0-9][a-z0-9+]*){0,99})?$"}
ID_LIST = {"type": "array", "items": {"type": "string"}, "maxItems": 100}
USER_ID = {"type": "string", "pattern": "^([0-9]{1,9}|0[0-9]{9}|1000000000)$",
           "description": "A decimal user id from 0 to 1000000000 (ASCII digits only)."}
MOVIE_ID = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9+]{0,254}$",
            "description": "A movie slug such as the+lion+king+1994."}
FORMAT = {"name": "format", "in": "query", "required": False,
          "schema": {"type": "string", "enum": ["text", "json"], "default": "text"}}
JSON_OBJECT = {"type": "object"}
VERSION_HEADER = {"description": "The model version that answered: v<N>, or 'content' before any promotion.",
                  "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RECOMMENDATION = {
    "type": "object",
    "required": ["user_id", "kind", "model_version", "ids", "items"],
    "properties": {
        "user_id": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
        "model_version": {"type": "string", "description": "The model version that answered (as X-Model-Version)."},
        "experiment": {"type": "string", "nullable": True,
                       "description": "The running experiment that chose the version (null outside one)."},
        "arm": {"type": "string", "nullable": True, "description": "The user's arm in that experiment: control "
                "or treatment (sticky: a hash of experiment and user; null outside one)."},
        "kind": {"type": "string", "enum": ["personalized", "cold_start", "fallback"]},
        "ids": {**ID_LIST, "maxItems": 20},
        "items": {"type": "array", "maxItems": 20, "items": {
            "type": "object", "required": ["id", "score", "because"],
            "properties": {"id": {"type": "string"}, "score": {"type": "number"},
                           "because": {"type": "string", "nullable": True}}}},
    },
}
READY = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "degraded", "unavailable"]},
        "reason": {"type": "string"},
        "checks": {"type": "object"},
    },
}


def spec() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "movie-recommender inference", "version": "1.0.0",
                 "description": "Vector-search movie recommendations for the streaming simulator."},
        "paths": {
            "/recommend/{user_id}": {"get": {
                "summary": "Up to 20 unwatched movie ids for a user, best first.",
                "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": USER_ID},
                               FORMAT],
                "responses": {
                    "200": {"description": "Comma-separated ids (text), or ids, scores and reasons (json).",
                            "headers": {"X-Model-Version": VERSION_HEADER},
                            "content": {"text/plain": {"schema": ID_LINE},
                                        "application/json": {"schema": RECOMMENDATION}}},
                    "400": TEXT_ERROR, "404": TEXT_ERROR},
            }},
            "/recommend": {"post": {
                "summary": "Recommendations for up to 1000 users at once.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["user_ids"],
                    "properties": {"user_ids": {"type": "array", "minItems": 1, "maxItems": 1000,
                                                "items": {"type": "integer", "minimum": 0,
                                                          "maximum": 1_000_000_000}}}}}}},
                "responses": {
                    "200": {**_json({"type": "object", "additionalProperties": {**ID_LIST, "maxItems": 20}},
                                    "A map from user id to its list of movie ids."),
                            "headers": {"X-Model-Version": VERSION_HEADER}},
                    "400": TEXT_ERROR, "413": TEXT_ERROR},
            }},
            "/similar/{movie_id}": {"get": {
                "summary": "The nearest movies of one movie by stored vectors.",
                "parameters": [
                    {"name": "movie_id", "in": "path", "required": True, "schema": MOVIE_ID},
                    {"name": "k", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    FORMAT],
                "responses": {
                    "200": {"description": "Comma-separated ids (text) or ids with blended similarities (json): "
                                           "blended_similarity = content_weight * cosine(MiniLM) + collab_weight"
                                           " * cosine(collaborative), so it ranges over"
                                           " [-(content_weight + collab_weight), content_weight + collab_weight]"
                                           " (1.5 with the default weights).",
                            "content": {"text/plain": {"schema": ID_LINE},
                                        "application/json": {"schema": {
                                            "type": "object", "required": ["movie_id", "ids", "items"],
                                            "properties": {"movie_id": {"type": "string"}, "ids": ID_LIST,
                                                           "items": {"type": "array"}}}}}},
                    "400": TEXT_ERROR, "404": TEXT_ERROR, "503": TEXT_ERROR},
            }},
            "/health": {"get": {"summary": "Liveness.", "responses": {
                "200": _json({"type": "object", "required": ["status"],
                              "properties": {"status": {"type": "string", "enum": ["ok"]}}}, "Alive.")}}},
            "/ready": {"get": {"summary": "Readiness of the store, vectors and caches.", "responses": {
                "200": _json(READY, "Everything usable."),
                "503": _json(READY, "Degraded or unavailable, with the reason.")}}},
            "/model/info": {"get": {"summary": "Model version, ranking config, encoder, collection versions, "
                                               "catalog size, config, revision.",
                                    "responses": {"200": _json({
                                        "type": "object",
                                        "required": ["model_version", "rank_config", "encoder",
                                                     "collection_versions", "catalog_size", "config", "revision"],
                                        "properties": {
                                            "model_version": {"type": "string"},
                                            "experiment": {"type": "object", "nullable": True,
                                                           "description": "The running experiment: its name "
                                                           "and each arm's version."},
                                            "rank_config": JSON_OBJECT,
                                            "encoder": {"type": "string"},
                                            "collection_versions": {"type": "object",
                                                                    "additionalProperties": {"type": "string"}},
                                            "catalog_size": {"type": "integer", "nullable": True},
                                            "config": JSON_OBJECT, "revision": {"type": "string"}}},
                                        "What is being served.")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics.", "responses": {
                "200": {"description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document.", "responses": {
                "200": _json(JSON_OBJECT, "The OpenAPI 3 description.")}}},
        },
    }
