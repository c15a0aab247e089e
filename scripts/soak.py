"""Soak: replay footage through the whole system for N minutes; report memory growth and lost alerts.

    python scripts/soak.py --minutes 30 [--edges 1] [--database-url URL] [--workdir DIR]

Starts its own Mosquitto (persistence on) on a free loopback port, `central serve --no-web` on the
database (default: SQLite in the work folder), and `edge run` workers replaying the demo street
camera (the real kerb photo held still as H.264, looped; dwell 5 s and 10 s reminders, so every
edge sends ~2 alerts/s). It samples each process's resident memory (VmRSS) every few seconds.

Memory growth is measured after a warm-up (the first fifth of the run, at least one minute):
growth = (median of the last 3 samples - median of the first 3 after warm-up) / the latter. The
goal (issue 7) is flat after warm-up, < 5 % over 30 minutes. At the end the edges are stopped
with SIGTERM, central is given time to store the last alerts, and every alert id an edge
published is looked up in the database: lost = published - stored - still waiting in an outbox.
Bounded: it stops by itself after --minutes; Ctrl-C stops early and still reports.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the process harness is shared with tests/faults

from fault_harness import (  # noqa: E402
    Mosquitto,
    Process,
    central_process,
    edge_config,
    edge_process,
    ledger,
    outbox_ids,
    published_ids,
    rss_kib,
    stored,
    wait_for,
)
from support import free_port  # noqa: E402

from streetwatch import demo  # noqa: E402
from streetwatch.central.db import migrate  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long to run (bounded)")
    parser.add_argument("--edges", type=int, default=1, help="edge workers (each ~1 CPU core)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the work folder")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here (default: temp, removed)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--assets", type=Path, default=REPO.parent / "shared" / "assets")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser


def growth(samples: list[tuple[float, int]], warmup_s: float) -> dict[str, float]:
    """RSS figures of one process: at warm-up end, at the end, growth in % after warm-up."""
    samples = [(t, rss) for t, rss in samples if rss > 0]  # 0: sampled before the process had memory
    after = [rss for t, rss in samples if t >= warmup_s]
    if len(after) < 6:
        return {"samples_after_warmup": float(len(after))}
    first, last = statistics.median(after[:3]), statistics.median(after[-3:])
    return {
        "rss_start_mib": round(samples[0][1] / 1024, 1),
        "rss_after_warmup_mib": round(first / 1024, 1),
        "rss_end_mib": round(last / 1024, 1),
        "rss_peak_mib": round(max(after) / 1024, 1),
        "growth_after_warmup_pct": round(100.0 * (last - first) / first, 2),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    model_dir = args.assets
    clip = demo.street_clip(args.assets, workdir / "street.mp4")
    db = args.database_url or f"sqlite:///{workdir / 'central.sqlite'}"
    migrate(db)
    broker = Mosquitto(workdir / "broker", free_port())
    processes: list[Process] = [broker]
    broker.start()
    try:
        central = central_process(workdir, database_url=db, broker_url=broker.url, client_id="soak-central")
        processes.append(central)
        central.start()
        wait_for(lambda: "subscribed to" in central.log(), 60, "central to subscribe")
        edges = []
        for number in range(args.edges):
            config = edge_config(workdir, edge_id=f"soak-{number}", clip=clip, broker_url=broker.url)
            edge = edge_process(workdir, config, model_dir, f"soak-{number}")
            processes.append(edge)
            edge.start()
            edges.append(edge)
        samples = _sample(edges, central, minutes=args.minutes, every_s=args.sample_s)
        return _finish(args, db=db, workdir=workdir, edges=edges, central=central, samples=samples)
    finally:
        for process in reversed(processes):
            process.kill()


def _sample(edges: list[Process], central: Process, *, minutes: float,
            every_s: float) -> dict[str, list[tuple[float, int]]]:
    samples: dict[str, list[tuple[float, int]]] = {p.name: [] for p in [*edges, central]}
    started = time.monotonic()
    try:
        while time.monotonic() - started < minutes * 60:
            for process in [*edges, central]:
                if not process.alive:
                    raise SystemExit(f"soak: {process.name} died: {process.log()[-2000:]}")
                samples[process.name].append((time.monotonic() - started, rss_kib(process.pid)))
            time.sleep(every_s)
    except KeyboardInterrupt:
        print("soak: interrupted, reporting what was measured", file=sys.stderr)
    return samples


def _finish(args: argparse.Namespace, *, db: str, workdir: Path, edges: list[Process], central: Process,
            samples: dict[str, list[tuple[float, int]]]) -> dict[str, object]:
    codes = {edge.name: edge.terminate() for edge in edges}
    waiting: set[str] = set()
    for edge in edges:
        waiting |= outbox_ids(workdir / f"{edge.name}.outbox.sqlite")
    published = published_ids(*(edge.log() for edge in edges))
    try:
        wait_for(lambda: published - waiting <= set(stored(db).alert_ids), 60, "the last alerts to be stored")
    except AssertionError as exc:
        print(f"soak: {exc}", file=sys.stderr)
    central.terminate()
    book = ledger(db, published, waiting=waiting)
    duration_s = max((s[-1][0] for s in samples.values() if s), default=0.0)
    warmup_s = max(60.0, duration_s / 5)
    return {
        "minutes": round(duration_s / 60, 2),
        "warmup_s": round(warmup_s),
        "edges": args.edges,
        "alerts_published": book.published,
        "alerts_stored": book.stored,
        "alerts_lost": len(book.lost),
        "alerts_duplicated": book.duplicated,
        "alerts_left_in_outbox": len(waiting),
        "cases": book.cases,
        "edge_exit_codes": codes,
        "memory": {name: growth(series, warmup_s) for name, series in samples.items()},
    }


def _print_table(figures: dict[str, object]) -> None:
    print(f"\nsoak: {figures['minutes']} min, {figures['edges']} edge(s), warm-up {figures['warmup_s']} s")
    print(f"alerts published {figures['alerts_published']}, stored {figures['alerts_stored']}, "
          f"lost {figures['alerts_lost']}, duplicated {figures['alerts_duplicated']}, "
          f"left in outbox {figures['alerts_left_in_outbox']}, cases {figures['cases']}")
    print("| process | RSS start MiB | after warm-up MiB | end MiB | peak MiB | growth after warm-up |")
    print("|---|---|---|---|---|---|")
    memory = figures["memory"]
    assert isinstance(memory, dict)
    for name, row in memory.items():
        print(f"| {name} | {row.get('rss_start_mib')} | {row.get('rss_after_warmup_mib')} | "
              f"{row.get('rss_end_mib')} | {row.get('rss_peak_mib')} | {row.get('growth_after_warmup_pct')} % |")


def main() -> int:
    args = _parser().parse_args()
    if shutil.which("mosquitto") is None:
        raise SystemExit("soak: needs the mosquitto binary (scripts/setup.sh installs it)")
    own = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streetwatch-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        figures = run(args, workdir)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    _print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if figures["alerts_lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
