"""WSGI entry point: `gunicorn -c inference/gunicorn.conf.py inference.wsgi:app`."""

from inference.app import create_app

app = create_app()
