"""`python -m evaluation offline` (default protocol): the figures of a model version, re-scored from the
store exactly as its gate scored it.

The version's row records its recipe (collaborative and ranking configs), its gate settings and the
watermark its split was cut at; this rebuilds that split from the store (events after the watermark take
no part), fits the recipe on the held-in part into a temporary collection, scores it with
`evaluation.gate.gate_report` (the function the trainer's gate calls), and sets the result beside the
figures the gate recorded: `matches_gate` is true when every headline figure agrees within
`MATCH_TOLERANCE`. Item-kNN, EASE and
ALS are scored on the same split as the strong baselines.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from evaluation import gate

MATCH_TOLERANCE = 0.002
"""How far a re-scored headline figure may lie from the gate's: ChromaDB's approximate (HNSW) index orders a
few near-tied neighbours differently from one build of the same vectors to the next (21 of 6,003 lists on
the demo, single- or multi-threaded), which moves a figure by a user's answer or a movie of coverage."""
HEADLINE = ("hit_rate_at_20", "hit_rate_at_10", "user_hit_rate_at_20", "ndcg_at_20", "mrr", "coverage_global")


def version_report(engine: Engine, embedding: Any, service: Any, version_name: str | None = None) -> dict[str, Any]:
    """The report of `version_name` (default: the active version); ValueError with one sentence when there
    is no such version or it was never scored."""
    from db_utils import model_versions as mv
    from embeddings.collab_job import drop_collection, fit_pairs
    from embeddings.store import VectorStore

    with engine.connect() as conn:
        if version_name is None:
            version = mv.active_version(conn)
            if version is None:
                raise ValueError("no model version is active yet: run `python -m training run` first.")
        else:
            version = mv.get_version(conn, mv.parse_version_name(version_name))
            if version is None:
                raise ValueError(f"there is no model version {version_name}.")
        events = mv.interaction_events(conn)
    recorded = version.metrics or {}
    if "gate" not in recorded:
        raise ValueError(f"{version.name} has no gate figures (it failed before its gate).")
    config = gate.GateConfig(**recorded["gate"])
    until = datetime.fromisoformat(recorded["until"]) if recorded.get("until") else None
    temp = f"eval_{uuid.uuid4().hex[:12]}"
    content = VectorStore(dataclasses.replace(embedding, collection=version.content_collection))
    try:
        report = gate.gate_report(
            events, config, until, gate.Recipe.from_version(version), None, content=content,
            make_collab=lambda role: VectorStore(dataclasses.replace(embedding, collection=f"{temp}_{role}")),
            fit=fit_pairs, service=service, baselines=True)
    finally:
        for role in ("candidate", "active"):
            drop_collection(embedding, f"{temp}_{role}")
    ours = report.pop("candidate")
    drift = max(abs(ours[k] - recorded["candidate"][k]) for k in HEADLINE)
    matches = drift <= MATCH_TOLERANCE
    return {
        "protocol": "the gate's temporal holdout: each user's most recent "
                    f"{config.holdout_fraction:.0%} of distinct movies, events up to {recorded.get('until')}",
        "version": version.name,
        "status": version.status,
        "service_ranking": ours,
        "gate_recorded": recorded["candidate"],
        "matches_gate": matches,
        "largest_difference": round(drift, 6),
        "baselines": {"most_popular": report["most_popular"], **report.get("baselines", {})},
        "paired_test": report.get("paired_test"),
        "cold_start": report.get("cold_start"),
        "split": report["split"],
        "rank_config": version.rank_config,
        "collab_config": version.collab_config,
        "code_revision": version.code_revision,
        "watermark": version.watermark,
    }


def markdown(report: dict[str, Any]) -> str:
    """The report's headline as a Markdown table: the version first, then each baseline."""
    from evaluation.metrics import markdown_table

    rows = {f"service ranking ({report['version']})": report["service_ranking"]}
    rows.update({f"baseline: {name}": value for name, value in report["baselines"].items()})
    text = markdown_table(rows, columns=("users", "hit_rate_at_20", "hit_rate_at_20_se", *HEADLINE[1:]))
    paired = report.get("paired_test")
    if paired:
        text += (f"\n\npaired against {paired['against']} (hit rate at 20, {paired['users']} users): "
                 f"{100 * paired['difference']:+.2f} points [{100 * paired['ci_low']:+.2f}, "
                 f"{100 * paired['ci_high']:+.2f}], Wilcoxon p = {paired['wilcoxon_p']:.3g} "
                 f"({paired['better']} users better off, {paired['worse']} worse)")
    cold = report.get("cold_start")
    if cold:
        buckets = [b for b in cold if b != "protocol"]
        names = list(cold[buckets[0]])
        text += f"\n\ncold start, hit rate at 20 ({cold['protocol']}):\n\n"
        text += "| bucket | users | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names) + "\n"
        for b in buckets:
            first = cold[b][names[0]]
            text += (f"| {b} | {first['users']} | "
                     + " | ".join(f"{100 * cold[b][n]['hit_rate_at_20']:.1f}%" if n in cold[b] else "-"
                                  for n in names) + " |\n")
    return text
