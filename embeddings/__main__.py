"""`python -m embeddings build --catalog PATH.csv|kaggle:PATH|movielens|api`: embed the catalog into ChromaDB;
`python -m embeddings collab`: collaborative item vectors into the collection `movies_cf`;
`python -m embeddings onnx`: export the model's ONNX Runtime graph into EMBED_ONNX_DIR now (a no-op when it
is cached), so a job or an image starts encoding at once.

Exit 0 on success (one JSON summary line on stdout), 1 with a one-line reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from core.logs import setup as setup_logs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["collab"]:  # the collaborative job has its own options (embeddings/collab_job.py)
        from embeddings.collab_job import main as collab_main

        return collab_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m embeddings", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collab", help="collaborative item vectors from the store into collection movies_cf", add_help=False)
    sub.add_parser("onnx", help="export the ONNX graph of MODEL_PATH into EMBED_ONNX_DIR (no-op when cached)")
    build = sub.add_parser("build", help="load a catalog, embed new or changed movies, drop gone ones")
    build.add_argument("--catalog", help="PATH.csv, kaggle:PATH (movies_metadata.csv), movielens or api; "
                                         "omit to embed only what the SQL store already holds")
    build.add_argument("--database-url", help="SQLAlchemy URL (default: DATABASE_URL or sqlite:///data/recsys.db)")
    build.add_argument("--batch-size", type=int, help="movies per commit step (default: EMBED_BATCH_SIZE or 1024)")
    build.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    setup_logs(logging.INFO)

    import dataclasses

    from sqlalchemy.exc import SQLAlchemyError

    from db_utils.engine import get_engine
    from embeddings.config import EmbeddingSettings
    from embeddings.job import build as run_build

    if args.command == "onnx":
        return _export_onnx()
    try:
        settings = EmbeddingSettings.from_env()
        if args.batch_size:
            if args.batch_size < 1:
                raise ValueError("--batch-size must be at least 1.")
            settings = dataclasses.replace(settings, batch_size=args.batch_size)
        report = run_build(args.catalog, settings=settings, engine=get_engine(args.database_url),
                           progress=False if args.no_progress else None)
    except (ValueError, OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: embeddings build failed: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(report)))
    return 0


def _export_onnx() -> int:
    """Make sure the ONNX graph exists and reproduces torch; print where it is (exit 1 if it cannot)."""
    from embeddings import onnx_model
    from embeddings.config import EmbeddingSettings
    from embeddings.encoder import Encoder

    try:
        settings = EmbeddingSettings.from_env()
        torch_encoder = Encoder(settings.model_path, backend="torch")
        onnx_model.load(settings.model_path, settings.onnx_dir, lambda: torch_encoder.model,
                        torch_encoder.fingerprint)
        path = onnx_model.graph_path(settings.model_path, settings.onnx_dir, torch_encoder.fingerprint)
    except Exception as exc:  # an export failure of any kind is this command's one-line answer
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: ONNX export failed: {reason}", file=sys.stderr)
        return 1
    print(json.dumps({"graph": path, "bytes": os.path.getsize(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
