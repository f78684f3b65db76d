"""The benchmark's ceiling: a trivial Flask endpoint served under the service's own gunicorn config."""

from flask import Flask, Response

app = Flask(__name__)


@app.get("/")
def index() -> Response:
    return Response("ok", mimetype="text/plain")


@app.get("/health")
def health() -> Response:
    return Response("ok", mimetype="text/plain")
