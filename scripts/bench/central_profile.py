"""A cProfile of `ingest_many` offline (no broker), batches of 100 as the consumer takes them:
where a worker's CPU goes, for `bench_central.py --profile N`.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import central_truth as truth
from streetwatch.central.attribution import MerchantIndexCache
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import make_engine, make_session_factory, session_scope
from streetwatch.central.ingest import Message, ingest_many

REPO = Path(__file__).resolve().parents[2]


def profile_ingest(
    db_url: str, dataset: truth.Dataset, pool: Sequence[bytes], *, count: int, evidence_dir: Path
) -> str:
    """The profile of `count` messages of `dataset` through ingest_many, as text."""
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    settings = CentralSettings(evidence_dir=evidence_dir)
    cache = MerchantIndexCache(max_distance_m=settings.attribution.max_distance_m)
    specs = list(dataset.messages())[:count]
    messages = [Message(truth.topic_for(s), truth.payload_for(s, pool[s.evidence_index])) for s in specs]
    with session_scope(factory) as session:
        cache.get(session)
    prof = cProfile.Profile()
    started = time.perf_counter()
    prof.enable()
    for i in range(0, len(messages), 100):
        with session_scope(factory, write_lock=True) as session:
            ingest_many(session, messages[i : i + 100], settings=settings, index=cache.get(session))
    prof.disable()
    seconds = time.perf_counter() - started
    engine.dispose()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(r"streetwatch|sqlalchemy/orm/session|pydantic", 22)
    head = f"{len(messages)} messages in {seconds:.1f} s under cProfile = {len(messages) / seconds:.0f} msg/s\n"
    return head + _trim(buf.getvalue())


def _trim(textual: str) -> str:
    keep = [line.replace(str(REPO) + "/", "").replace(sys.prefix, "<venv>") for line in textual.splitlines()]
    return "\n".join(line for line in keep if line.strip() and "Ordered by" not in line)
