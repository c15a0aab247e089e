#!/usr/bin/env python3
"""Edge benchmark: pipeline overhead over raw onnxruntime, and 1080p25 H.264 streams per box.

    python scripts/bench_edge.py [--quick] [--streams N] [--naive-streams N] [--span S] [--evidence-only]

Everything is measured side by side in one run and printed as markdown tables; nothing is
asserted (the machine is noisy: read the ratios). The model is found via $STREETWATCH_MODEL_DIR
(default ../shared/assets); the footage is built here from the real street photos in
$STREETWATCH_ASSETS_DIR/street: a 1920x1080 still scene with per-frame sensor noise, a cyclist
and a car crossing and a basin of goods set down, encoded as H.264 (libx264 veryfast, 4 Mbit/s,
no B-frames, GOP 50 = one key frame per 2 s at 25 fps, a common IP-camera setting), then looped
by remuxing (no re-encode) to the stream span.

Table 1 interleaves, frame by frame, the bare `Detector.infer_raw` call on a prepared tensor with
the whole per-frame pipeline (preprocess + infer + postprocess + CameraAnalyzer.analyze) on real
decoded 1080p frames; the 1-thread rows also show the detector alone (so the share of tracking and
rules is visible), but the goal is judged on the whole pipeline: for one camera per loop, and as
the worker runs it under load, the real `DetectionLoop.step` over a batch of cameras (each with its
own tracks and rules; frames rendered ahead, as the decode threads do). Table 4 (printed first, it
needs only the base clip): the evidence of one alert, the old single JPEG beside the evidence set
(photo, first seen, confirmed, crop, H.264 clip, clean frame), and the set's per-frame cost.
Table 2 runs each variant in its own subprocess (so peak RSS does not mix): N streams
concurrently as fast as possible over S stream seconds (StreetWatch: the real EdgeWorker with 1 and
with 2 detection loops; naive: OpenCV decode threads and one detector); capacity = stream-seconds
processed per wall second = the streams kept in real time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    Summary,
    cpu_model,
    cpu_seconds,
    fmt,
    free_port,
    markdown_table,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    usable_cores,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ASSETS = REPO.parent / "shared" / "assets"
WIDTH, HEIGHT, FPS, GOP = 1920, 1080, 25, 50
SUB_WIDTH, SUB_HEIGHT = 640, 360
CYCLE_S = 30  # something crosses the zones every 30 s: a quiet street, not an empty one
SAMPLE_FPS = 0.5
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
SX, SY = WIDTH / 958, HEIGHT / 568  # the kerb photo is 958x568


def _px(points: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(x * SX), round(y * SY)] for x, y in points]


def edge_config(
    model_dir: Path, clip: Path, camera_id: str = "cam-0", *, detect: Path | None = None, max_skip_s: float = 0.0
) -> object:
    """The bench camera: `clip` its main stream; `detect` a sub-stream of it (zones and calibration
    stay in the main stream's 1920x1080 pixels); max_skip_s 0 = every sampled frame detected."""
    from streetwatch.edge.config import EdgeConfig

    streams: dict[str, object] = {"max_skip_s": max_skip_s}
    if detect is not None:
        streams.update(detect_url=str(detect), pixel_size=[WIDTH, HEIGHT])

    lower = _px([(0, 390), (958, 390), (958, 568), (0, 568)])
    return EdgeConfig.model_validate(
        {
            "edge_id": "bench",
            "model": {"name": "yolox_nano", "model_dir": str(model_dir)},
            "rules": {"reminder_interval_s": 60, "end_after_s": 30},
            "cameras": [
                {
                    "id": camera_id,
                    "url": str(clip),
                    **streams,
                    "sample_fps": SAMPLE_FPS,
                    "keyframes_only": True,
                    "calibration": {
                        "points": [
                            [p, g]
                            for p, g in zip(
                                _px([(260, 365), (720, 365), (958, 560), (0, 560)]),
                                [[31.3004, 120.5851], [31.3004, 120.5854], [31.3001, 120.58545], [31.3001, 120.58505]],
                                strict=True,
                            )
                        ]
                    },
                    "zones": [
                        {
                            "id": "z-park",
                            "violations": ["illegal_parking"],
                            "dwell_s": 20,
                            "polygon_px": _px([(540, 315), (760, 315), (760, 375), (540, 375)]),
                        },
                        {"id": "z-vend", "violations": ["street_vending"], "dwell_s": 30, "polygon_px": lower},
                        {"id": "z-goods", "violations": ["stacked_goods"], "dwell_s": 30, "polygon_px": lower},
                    ],
                }
            ],
        }
    )


# ---------------------------------------------------------------- footage


def _scene(street: Path) -> tuple[np.ndarray, list[tuple[np.ndarray, int, int, float, float, float]]]:
    """The still background and movers (crop, x0, x1, y_bottom, t_in, t_out) in a CYCLE_S cycle: a
    cyclist and a car cross in its first 10 s, then the street is still (parked cars, the goods)."""
    base = cv2.resize(
        cv2.imread(str(street / "kerb_parked_cars_street.jpg")), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC
    )
    crowd = cv2.imread(str(street / "street_cyclists_crowd.jpg"))
    cars = cv2.imread(str(street / "parked_cars_park_bench.jpg"))
    market = cv2.imread(str(street / "market_hanoi_goods_on_ground.jpg"))
    cyclist = cv2.resize(crowd[53:551, 743:954], (176, 420))
    car = cv2.resize(cars[116:149, 290:380], (360, 132))
    goods = cv2.resize(market[255:300, 310:400], (360, 180))
    return base, [
        (cyclist, -180, WIDTH, 1040, 0.0, 8.0),
        (car, WIDTH, -360, 860, 5.0, 9.0),
        (goods, 300, 300, 1000, 4.0, 1e9),
    ]


def _frame(base: np.ndarray, movers: list, t: float, noise: np.ndarray) -> np.ndarray:
    image = base.copy()
    for crop, x0, x1, bottom, t_in, t_out in movers:
        if not t_in <= t % CYCLE_S + (t // CYCLE_S * CYCLE_S if t_out > 100 else 0) < t_out:
            continue
        u = min(1.0, (t % CYCLE_S - t_in) / max(t_out - t_in, 1e-6)) if t_out < 100 else 0.0
        x = int(x0 + (x1 - x0) * u)
        h, w = crop.shape[:2]
        left, right = max(x, 0), min(x + w, WIDTH)
        if right > left:
            image[bottom - h : bottom, left:right] = crop[:, left - x : right - x]
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def encode_base(street: Path, path: Path, seconds: int, *, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    """Encode `seconds` (a multiple of the 2 s GOP) of the noisy 1080p25 scene as H.264 at `size`:
    a smaller size is the same frames scaled down, as a camera makes its sub-stream (4 Mbit/s at
    1080p, scaled by area below it)."""
    base, movers = _scene(street)
    rng = np.random.default_rng(7)
    bank = [rng.normal(0, 3.0, (HEIGHT, WIDTH, 3)).astype(np.int16) for _ in range(6)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.bit_rate = max(300_000, int(4_000_000 * size[0] * size[1] / (WIDTH * HEIGHT)))
        stream.options = {"preset": "veryfast", "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"}
        for i in range(seconds * FPS):
            image = _frame(base, movers, i / FPS, bank[i % len(bank)])
            if size != (WIDTH, HEIGHT):
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def loop_clip(base: Path, path: Path, seconds: float) -> Path:
    """Remux `base` back to back (packets only, pts shifted) until `seconds` of stream."""
    with av.open(str(base)) as src:
        packets = [p for p in src.demux(src.streams.video[0]) if p.size]
        template = src.streams.video[0]
        period = (
            int(round(float(template.duration or 0))) or max(p.pts for p in packets) + packets[1].pts - packets[0].pts
        )
        with av.open(str(path), "w") as out:
            stream = out.add_stream_from_template(template)
            loops = int(np.ceil(seconds / float(period * template.time_base)))
            for k in range(loops):
                for p in packets:
                    p.pts, p.dts = p.pts + (period if k else 0), p.dts + (period if k else 0)
                    p.stream = stream
                    out.mux(p)
    return path


# ---------------------------------------------------------------- table 1: per-frame cost


class StageTimer:
    """Wraps a bound method so each call's duration lands in `times[name]` (ms)."""

    def __init__(self, times: dict[str, list[float]]) -> None:
        self.times = times

    def wrap(self, owner: object, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.times.setdefault(name, []).append((time.perf_counter() - t0) * 1000)

        setattr(owner, attr, timed)


class HeldFrame:
    """Stands in for a CameraSource in table 1: hands the detection loop the one frame put in it."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.frame: object | None = None
        self.finished, self.connected = False, True
        self.frames_decoded = self.frames_dropped = 0

    def get(self, timeout: float | None = None) -> object | None:
        frame, self.frame = self.frame, None
        return frame


def batched_loop(model_dir: Path, clip: Path, detector: object) -> tuple[object, list[HeldFrame]]:
    """The worker's DetectionLoop over `batch_size` cameras (their own tracks and rules) on `detector`."""
    from streetwatch.edge import pipeline
    from streetwatch.edge.metrics import EdgeMetrics
    from streetwatch.edge.worker import DetectionLoop

    first = edge_config(model_dir, clip, camera_id="cam-0")
    batch = first.model.batch_size  # type: ignore[attr-defined]
    configs = [first, *(edge_config(model_dir, clip, camera_id=f"cam-{k}") for k in range(1, batch))]
    analyzers, sources = {}, []
    for config in configs:
        camera = config.cameras[0]  # type: ignore[attr-defined]
        analyzers.update(pipeline.build_analyzers(config, detector.model_ref, [camera]))  # type: ignore[arg-type, attr-defined]
        sources.append(HeldFrame(camera.id))
    loop = DetectionLoop(
        detector, sources, analyzers, batch_size=batch, metrics=EdgeMetrics(), emit=lambda alert: None  # type: ignore[arg-type]
    )
    return loop, sources


def per_frame(model_dir: Path, clip: Path, frames_n: int) -> str:
    from streetwatch.edge import pipeline
    from streetwatch.edge.detector import Detector
    from streetwatch.edge.picture import AvPicture
    from streetwatch.edge.types import Frame

    config = edge_config(model_dir, clip)
    camera = config.cameras[0]  # type: ignore[attr-defined]
    detector = Detector.from_config(config.model)  # type: ignore[attr-defined]
    analyzer = pipeline.build_analyzers(config, detector.model_ref, [camera])[camera.id]  # type: ignore[arg-type]
    # The default on a CPU box: one detection loop per core, each with a 1-thread session.
    single = Detector.from_config(config.model.model_copy(update={"threads": 1}))  # type: ignore[attr-defined]
    single_analyzer = pipeline.build_analyzers(config, single.model_ref, [camera])[camera.id]  # type: ignore[arg-type]
    # The worker's own step: a frame from each of batch_size cameras, detected, then each analysed.
    loop, held = batched_loop(model_dir, clip, single)
    raw_single, detect_single, total_single, batched = [], [], [], []
    decoded = []
    with av.open(str(clip)) as c:  # real decoded frames every 0.5 s of the base clip
        for i, f in enumerate(c.decode(video=0)):
            if i % 12 == 0:
                decoded.append(f)
            if len(decoded) >= 40:
                break
    images = [f.to_ndarray(format="bgr24") for f in decoded]
    fixed = detector.preprocess([images[0]]).tensor.copy()
    stages: dict[str, list[float]] = {}
    timer = StageTimer(stages)
    timer.wrap(analyzer.tracker, "update", "tracking (ByteTrack + stable ids)")
    if analyzer.foreground is not None:
        timer.wrap(analyzer.foreground, "update", "static foreground")
    timer.wrap(analyzer.engine, "update", "rules")
    timer.wrap(analyzer, "_to_alert", "alert + evidence JPEG (per alert)")
    raw, total, alerts = [], [], 0
    convert_full, convert_view = [], []
    warm = 8
    for i in range(frames_n + warm):
        av_frame = decoded[i % len(decoded)]
        # The decode thread's share (not in the pipeline time): a full-size BGR conversion, as it
        # did before pictures, versus rendering only the detector's view, as it does now.
        c0 = time.perf_counter()
        av_frame.to_ndarray(format="bgr24")
        c1 = time.perf_counter()
        picture = AvPicture(av_frame)
        detector.view(picture)
        c2 = time.perf_counter()
        t0 = time.perf_counter()
        detector.infer_raw(fixed)
        t1 = time.perf_counter()
        prepared = detector.preprocess([picture])
        t2 = time.perf_counter()
        output = detector.infer_raw(prepared.tensor)
        t3 = time.perf_counter()
        dets = detector.postprocess(output, prepared.letterboxes)[0]
        t4 = time.perf_counter()
        frame = Frame(camera.id, picture, i / SAMPLE_FPS, START, i)
        alerts += len(analyzer.analyze(frame, dets))
        t5 = time.perf_counter()
        own = AvPicture(av_frame)  # its own renders: the evidence must not come from the other run's cache
        single.view(own)
        s0 = time.perf_counter()
        single.infer_raw(fixed)
        s1 = time.perf_counter()
        single_dets = single.detect(own)
        sd = time.perf_counter()
        single_analyzer.analyze(Frame(camera.id, own, i / SAMPLE_FPS, START, i), single_dets)
        s2 = time.perf_counter()
        for k, source in enumerate(held):  # each camera at its own place in the clip, rendered ahead
            picture = AvPicture(decoded[(i + 10 * k) % len(decoded)])
            single.view(picture)
            source.frame = Frame(source.camera_id, picture, i / SAMPLE_FPS, START, i)
        b0 = time.perf_counter()
        stepped = loop.step()  # type: ignore[attr-defined]
        batched.append((time.perf_counter() - b0) * 1000 / stepped)
        raw_single.append((s1 - s0) * 1000)
        detect_single.append((sd - s1) * 1000)
        total_single.append((s2 - s1) * 1000)
        if i < warm:
            stages.clear()
            raw_single.clear()
            detect_single.clear()
            total_single.clear()
            batched.clear()
            continue
        raw.append((t1 - t0) * 1000)
        convert_full.append((c1 - c0) * 1000)
        convert_view.append((c2 - c1) * 1000)
        for name, a, b in (
            ("preprocess (letterbox the view into the tensor)", t1, t2),
            ("infer (in pipeline)", t2, t3),
            ("postprocess (decode + NMS)", t3, t4),
            ("analyze (all)", t4, t5),
        ):
            stages.setdefault(name, []).append((b - a) * 1000)
        total.append((t5 - t1) * 1000)
    r, p = Summary.of(raw), Summary.of(total)
    r1, d1, p1 = Summary.of(raw_single), Summary.of(detect_single), Summary.of(total_single)
    b1 = Summary.of(batched)

    def overhead(pipe: Summary, bare: Summary) -> str:
        return (
            f"{100 * (pipe.median / bare.median - 1):+.1f} % (median), "
            f"{100 * (pipe.mean / bare.mean - 1):+.1f} % (mean)"
        )

    rows = [
        ["raw onnxruntime `infer_raw`, session on all cores (batch 1, 416x416)", fmt(r.median, 2), fmt(r.p90, 2),
         fmt(r.mean, 2), "-"],
        ["pipeline per frame (pre + infer + post + analyze), same session", fmt(p.median, 2), fmt(p.p90, 2),
         fmt(p.mean, 2), overhead(p, r)],
        ["raw onnxruntime `infer_raw`, 1-thread session (default: one detection loop per core)",
         fmt(r1.median, 2), fmt(r1.p90, 2), fmt(r1.mean, 2), "-"],
        ["detector only (pre + infer + post), 1-thread session", fmt(d1.median, 2), fmt(d1.p90, 2),
         fmt(d1.mean, 2), overhead(d1, r1)],
        ["pipeline per frame, 1-thread session, one camera (the goal's measure)", fmt(p1.median, 2),
         fmt(p1.p90, 2), fmt(p1.mean, 2), overhead(p1, r1)],
        [f"pipeline per frame, 1-thread session, `DetectionLoop.step` over {len(held)} cameras (the worker's "
         "default batch: detect all, then analyse each)", fmt(b1.median, 2), fmt(b1.p90, 2), fmt(b1.mean, 2),
         overhead(b1, r1)],
    ]
    head = markdown_table(["per frame, ms", "median", "p90", "mean", "overhead vs raw"], rows)
    srows = []
    for name, values in stages.items():
        s = Summary.of(values)
        share = (
            sum(values) / len(total) / (p.mean - r.mean) * 100
            if "infer" not in name and "all" not in name
            else float("nan")
        )
        srows.append([name, s.n, fmt(s.median, 2), fmt(s.p90, 2), fmt(sum(values) / len(total), 2), fmt(share, 0)])
    body = markdown_table(["stage", "calls", "median ms", "p90 ms", "ms per frame (amortised)", "% of overhead"], srows)
    full, view = Summary.of(convert_full), Summary.of(convert_view)
    decode = markdown_table(
        ["decode thread, per sampled frame (beside the loop, not in the pipeline time)", "median ms"],
        [
            ["YUV -> full 1920x1080 BGR (what every sampled frame cost before pictures)", fmt(full.median, 2)],
            ["YUV -> the detector's 416x234 view only (now; full size only if a stage asks)", fmt(view.median, 2)],
        ],
    )
    return (
        f"{head}\n\n{len(total)} frames, interleaved raw/pipeline; {alerts} alerts fired "
        f"(zones for all three violations; frames 0.5 s apart in the clip fed as 2 s of stream time).\n\n{body}"
        f"\n\n{decode}"
    )


# ---------------------------------------------------------------- table 1b: background model A/B


def _street_views(assets: Path, seconds: int) -> list[np.ndarray]:
    """The real street clip (video/cvtrafficcam_street_parking.mp4, 640x360) at 1 fps, ping-ponged."""
    frames: list[np.ndarray] = []
    with av.open(str(assets / "video" / "cvtrafficcam_street_parking.mp4")) as c:
        for f in c.decode(video=0):
            if f.time is not None and f.time >= len(frames):
                frames.append(f.to_ndarray(format="bgr24"))
    cycle = [*range(len(frames)), *range(len(frames) - 2, 0, -1)]
    return [frames[cycle[t % len(cycle)]] for t in range(seconds)]


def background_ab(assets: Path, bench_clip: Path, updates: int) -> str:
    """The static-foreground model's update, new (colour + shape evidence) and old (colour only,
    `texture=False`: the code path before issue 19) interleaved update by update on the same frames."""
    from streetwatch.edge.config import RulesConfig
    from streetwatch.edge.foreground import StaticForeground, foreground_params

    rules = RulesConfig()
    interval = rules.static_check_interval_s
    scenes: list[tuple[str, list[np.ndarray], tuple[int, int], tuple[float, float, float, float] | None]] = []
    street = _street_views(assets, round(updates * interval))[:: round(interval)]
    scenes.append(("real street clip 640x360, whole view", street, (640, 360), None))
    views = []
    with av.open(str(bench_clip)) as c:  # the 1080p bench scene, as the pipeline feeds it: a >= 384 px view
        for i, f in enumerate(c.decode(video=0)):
            if i % 25 == 0:
                views.append(cv2.resize(f.to_ndarray(format="bgr24"), (416, 234), interpolation=cv2.INTER_AREA))
            if len(views) >= updates:
                break
    views = [views[t % len(views)] for t in range(updates)]  # a short clip: its frames again, in turn
    goods = _px([(0, 390), (958, 390), (958, 568), (0, 568)])
    watch = (min(p[0] for p in goods), min(p[1] for p in goods), max(p[0] for p in goods), max(p[1] for p in goods))
    scenes.append(("1080p bench scene (416 px view), goods-zone box", views, (WIDTH, HEIGHT), watch))
    rows = []
    for name, frames, size, box in scenes:
        new = StaticForeground("new", foreground_params(rules), watch=box)
        old = StaticForeground("old", replace(foreground_params(rules), texture=False), watch=box)
        times: dict[str, list[float]] = {"new": [], "old": []}
        warm_until = rules.foreground.warmup_s
        for k, image in enumerate(frames):
            t = k * interval
            for label, model in (("old", old), ("new", new)) if k % 2 else (("new", new), ("old", old)):
                t0 = time.perf_counter()
                model.update(image, t, frame_size=size)
                if t >= warm_until:  # the warm-up median is a one-off; report the steady state
                    times[label].append((time.perf_counter() - t0) * 1000)
        o, n = Summary.of(times["old"]), Summary.of(times["new"])
        rows.append([name, o.n, fmt(o.median, 2), fmt(n.median, 2), fmt(n.median / o.median, 2),
                     fmt(o.median / interval, 3), fmt(n.median / interval, 3)])
    return markdown_table(
        ["scene", "updates", "old (colour) median ms", "new (colour + shape) median ms", "new / old",
         f"old ms per 1 fps frame (one update per {interval:.0f} s)", "new ms per 1 fps frame"],
        rows,
    )


# ---------------------------------------------------------------- table 2: streams (subprocess)


def run_variant(
    variant: str, *, model_dir: Path, clip: Path, streams: int, span: float, sub_clip: Path | None = None
) -> dict[str, float]:
    if variant.startswith("streetwatch"):
        return _run_worker(int(variant.split("_")[1]), model_dir=model_dir, clip=clip, streams=streams, span=span)
    if variant in ("sub", "subskip"):
        assert sub_clip is not None
        return _run_worker(2, model_dir=model_dir, clip=clip, streams=streams, span=span, sub_clip=sub_clip,
                           max_skip_s=10.0 if variant == "subskip" else 0.0)
    from streetwatch.edge.config import ModelConfig
    from streetwatch.edge.detector import Detector

    detector = Detector.from_config(ModelConfig(name="yolox_nano", model_dir=model_dir))
    detector.detect(np.zeros((HEIGHT, WIDTH, 3), np.uint8))  # warm up the session arena
    frames: queue.Queue = queue.Queue(maxsize=2 * streams)
    sampled = [0]
    baseline = rss_mb()
    reset_peak_rss()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    threads = [
        threading.Thread(target=_naive_thread, args=(clip, span, frames, variant == "naive_grab"), daemon=True)
        for _ in range(streams)
    ]
    for t in threads:
        t.start()
    _naive_consume(detector, frames, threads, sampled)
    wall = time.perf_counter() - wall0
    return {
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu0,
        "stream_s": streams * span,
        "sampled": sampled[0],
        "rss_base_mb": baseline,
        "rss_peak_mb": peak_rss_mb(),
        "streams": streams,
    }


def _run_worker(
    loops: int, *, model_dir: Path, clip: Path, streams: int, span: float, sub_clip: Path | None = None,
    max_skip_s: float = 0.0,
) -> dict[str, float]:
    """The real EdgeWorker (sources, detection loops, analysis, outbox) on N file cameras; no broker
    listens, so alerts stay in a throw-away outbox. Its `run` returns when every file is done.
    sub_clip: each camera detects on it and keeps `clip` as its main stream (demuxed, decoded for
    evidence)."""
    from streetwatch.edge.config import EdgeConfig
    from streetwatch.edge.worker import EdgeWorker

    one = edge_config(model_dir, clip, detect=sub_clip, max_skip_s=max_skip_s).model_dump(mode="json")  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="bench_worker_") as tmp:
        one.update(
            cameras=[dict(one["cameras"][0], id=f"cam-{i}") for i in range(streams)],
            model=dict(one["model"], detection_loops=loops),
            outbox=str(Path(tmp) / "outbox.sqlite"),
            broker={"url": f"mqtt://127.0.0.1:{free_port()}"},
        )
        worker = EdgeWorker(EdgeConfig.model_validate(one))
        for loop in worker.loops:
            loop.detector.detect(np.zeros((HEIGHT, WIDTH, 3), np.uint8))  # warm up the session arenas
        baseline = rss_mb()
        reset_peak_rss()
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        worker.start()
        try:
            worker.run(drain_timeout_s=0)
        finally:
            worker.stop()
        wall = time.perf_counter() - wall0
        metrics = worker.metrics
        cameras = [{"camera": source.camera_id} for source in worker.sources]
        return {
            "wall_s": wall,
            "cpu_s": cpu_seconds() - cpu0,
            "stream_s": streams * span,
            "sampled": sum(source.frames_sampled for source in worker.sources),
            "skipped": sum(metrics.sample("streetwatch_frames_skipped_total", c) or 0 for c in cameras),
            "inferred": metrics.sample("streetwatch_frames_inferred_total") or 0,
            "alerts": worker.outbox.depth(),
            "evidence_n": metrics.sample("streetwatch_evidence_seconds_count") or 0,
            "evidence_sum_s": metrics.sample("streetwatch_evidence_seconds_sum") or 0,
            "evidence_le_1s": metrics.sample("streetwatch_evidence_seconds_bucket", {"le": "1.0"}) or 0,
            "evidence_full": sum(
                metrics.sample("streetwatch_evidence_full_resolution_total", c) or 0 for c in cameras
            ),
            "main_decodes": sum(main.decodes for main in worker.main_streams.values()),
            "rss_base_mb": baseline,
            "rss_peak_mb": peak_rss_mb(),
            "streams": streams,
        }


def _naive_thread(clip: Path, span: float, out: queue.Queue, grab: bool) -> None:
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    every = int(FPS / SAMPLE_FPS)
    for index in range(int(span * FPS)):
        due = index % every == 0
        if grab and not due:
            ok = capture.grab()
        else:
            ok, image = capture.read()
        if not ok:
            break
        if due:
            out.put(image)
    capture.release()


def _naive_consume(detector: object, frames: queue.Queue, threads: list[threading.Thread], sampled: list[int]) -> None:
    while any(t.is_alive() for t in threads) or not frames.empty():
        try:
            image = frames.get(timeout=0.05)
        except queue.Empty:
            continue
        detector.detect(image)  # type: ignore[attr-defined]
        sampled[0] += 1


def streams_table(results: dict[str, dict[str, float]]) -> str:
    labels = {
        "streetwatch_1": "StreetWatch EdgeWorker, 1 detection loop (session on all cores)",
        "streetwatch_2": "StreetWatch EdgeWorker, 2 detection loops (a 1-thread session each)",
        "naive": "naive: cv2.VideoCapture.read() every frame, detect every 50th",
        "naive_grab": "naive+: grab() every frame, retrieve + detect every 50th",
        "sub": "StreetWatch, 2 loops, detect on the 640x360 sub-stream, main demuxed for evidence",
        "subskip": "StreetWatch, 2 loops, sub-stream + change skipping (max_skip_s 10)",
    }
    rows = []
    base = results.get("naive", {}).get("capacity", float("nan"))
    for name, r in results.items():
        rows.append(
            [
                labels[name],
                int(r["streams"]),
                fmt(r["wall_s"]),
                fmt(r["cpu_s"] / r["wall_s"], 2),
                fmt(r["sampled"] / r["stream_s"], 2),
                fmt(r["capacity"], 1),
                int(r["capacity"]),
                fmt(r["capacity"] / base, 1) + "x",
                fmt((r["rss_peak_mb"] - r["rss_base_mb"]) / r["streams"], 1),
            ]
        )
    return markdown_table(
        [
            "variant",
            "N concurrent",
            "wall s",
            "cores busy",
            "detections/s per stream",
            "capacity (stream-s per wall-s)",
            "streams kept in real time",
            "vs naive",
            "peak RSS growth per stream MB",
        ],
        rows,
    )


def substreams_table(results: dict[str, dict[str, float]]) -> str:
    """Issue 23's goals: main-only vs sub-stream vs sub-stream + skipping, from the same run."""
    base = results.get("streetwatch_2", {}).get("capacity", float("nan"))
    labels = {"streetwatch_2": "main stream only (1920x1080, every sampled frame detected)",
              "sub": "sub-stream detection (640x360), main demuxed, decoded for evidence",
              "subskip": "sub-stream + change skipping"}
    rows = []
    for name in ("streetwatch_2", "sub", "subskip"):
        r = results.get(name)
        if r is None:
            continue
        n = r.get("evidence_n", 0)
        rows.append([
            labels[name],
            int(r["capacity"]),
            fmt(r["capacity"] / base, 2) + "x",
            fmt(100 * r.get("skipped", 0) / max(r["sampled"], 1), 0) + " %",
            fmt((r["rss_peak_mb"] - r["rss_base_mb"]) / r["streams"], 1),
            f"{int(n)} ({int(r.get('evidence_full', 0))} full-res)" if n else "-",
            fmt(1000 * r["evidence_sum_s"] / n, 0) if n else "-",
            fmt(100 * r["evidence_le_1s"] / n, 0) + " %" if n else "-",
        ])
    return markdown_table(
        ["variant", "streams kept in real time", "vs main-only", "frames skipped", "peak RSS growth per stream MB",
         "evidence JPEGs", "alert -> JPEG mean ms", "<= 1 s"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1 minute: shorter clip, span and sample")
    ap.add_argument("--streams", type=int, default=None, help="StreetWatch concurrent streams (default 32, quick 16)")
    ap.add_argument("--naive-streams", type=int, default=4, help="naive loop concurrent streams")
    ap.add_argument("--span", type=float, default=None,
                    help=f"stream seconds per stream, rounded up to whole {CYCLE_S} s cycles (default 60, quick 30)")
    ap.add_argument("--frames", type=int, default=None, help="frames for table 1 (default 150, quick 50)")
    ap.add_argument("--evidence-only", action="store_true", help="only table 4 (evidence per alert)")
    ap.add_argument("--variants", default="streetwatch_1,streetwatch_2,naive,naive_grab,sub,subskip",
                    help="table 2 variants to run (comma-separated)")
    ap.add_argument("--no-per-frame", action="store_true", help="skip table 1 (a shorter run)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--sub-clip", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    model_dir = Path(os.environ.get("STREETWATCH_MODEL_DIR") or DEFAULT_ASSETS)
    street = Path(os.environ.get("STREETWATCH_ASSETS_DIR") or DEFAULT_ASSETS) / "street"
    span = args.span or (30.0 if args.quick else 60.0)
    span = float(math.ceil(span / CYCLE_S) * CYCLE_S)  # whole scene cycles: the clip is looped by them
    if args.worker:
        print(
            json.dumps(run_variant(args.worker, model_dir=model_dir, clip=args.clip, streams=args.streams, span=span,
                                   sub_clip=args.sub_clip))
        )
        return 0
    import onnxruntime as ort

    print(
        f"machine: {usable_cores()} cores, {cpu_model()}, onnxruntime {ort.__version__} "
        f"providers {ort.get_available_providers()}, PyAV {av.__version__}, OpenCV {cv2.__version__}, "
        f"load average at start {os.getloadavg()[0]:.1f} (numbers are only comparable within one run)\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench_edge_") as tmp:
        t0 = time.perf_counter()
        base = encode_base(street, Path(tmp) / "base.mp4", CYCLE_S)
        clip = loop_clip(base, Path(tmp) / "span.mp4", span)
        sub_base = encode_base(street, Path(tmp) / "sub_base.mp4", CYCLE_S, size=(SUB_WIDTH, SUB_HEIGHT))
        sub_clip = loop_clip(sub_base, Path(tmp) / "sub_span.mp4", span)
        mbit = clip.stat().st_size * 8 / span / 1e6
        print(
            f"footage: 1920x1080 25 fps H.264 (libx264 veryfast, {mbit:.1f} Mbit/s, no B-frames, GOP {GOP} = 2 s), "
            f"{span:.0f} s per stream, built in {time.perf_counter() - t0:.0f} s from kerb_parked_cars_street.jpg "
            "+ crops of street_cyclists_crowd / parked_cars_park_bench / market_hanoi (noise sigma 3); a cyclist "
            f"and a car cross in the first 10 s of every {CYCLE_S} s; the same frames scaled to "
            f"{SUB_WIDTH}x{SUB_HEIGHT} as the sub-stream ({sub_clip.stat().st_size * 8 / span / 1e6:.1f} Mbit/s)\n"
        )
        print("## 4. Evidence per alert: the old single JPEG beside the evidence set (same run)\n")
        from bench_evidence import bench_evidence_set

        print(bench_evidence_set(base, config=edge_config(model_dir, base), sample_fps=SAMPLE_FPS) + "\n")
        if args.evidence_only:
            return 0
        if not args.no_per_frame:
            print("## 1. Per-frame cost: raw onnxruntime vs the pipeline (goal: overhead <= 15 %)\n")
            print(per_frame(model_dir, base, args.frames or (50 if args.quick else 150)) + "\n")
            print("## 1b. Background model per update: old (colour only) vs new (colour + shape), same frames\n")
            assets = Path(os.environ.get("STREETWATCH_ASSETS_DIR") or DEFAULT_ASSETS)
            print(background_ab(assets, base, 40 if args.quick else 120) + "\n")
        print(f"## 2. Concurrent 1080p25 streams at {SAMPLE_FPS} detections/s each (goal >= 16 and >= 5x naive)\n")
        results = {}
        plan = [
            ("streetwatch_1", args.streams or (16 if args.quick else 32)),
            ("streetwatch_2", args.streams or (16 if args.quick else 32)),
            ("naive", args.naive_streams),
            ("naive_grab", args.naive_streams),
            ("sub", args.streams or (16 if args.quick else 32)),
            ("subskip", args.streams or (16 if args.quick else 32)),
        ]
        wanted = set(args.variants.split(","))
        for variant, n in [(v, n) for v, n in plan if v in wanted]:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    variant,
                    "--clip",
                    str(clip),
                    "--streams",
                    str(n),
                    "--span",
                    str(span),
                    "--sub-clip",
                    str(sub_clip),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                print(f"{variant} failed:\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["capacity"] = r["stream_s"] / r["wall_s"]
            results[variant] = r
        print(streams_table({k: v for k, v in results.items() if k not in ("sub", "subskip")}) + "\n")
        print("## 2b. Sub-streams and change skipping (issue 23: goal >= 250 streams with both, >= 3x main-only, "
              "<= 40 MB per stream, evidence <= 1 s)\n")
        print(substreams_table(results) + "\n")
    print("## 3. Moving camera: projection cost and geo error on a synthetic patrol track\n")
    from bench_moving import bench_moving_camera, format_table

    print(format_table(bench_moving_camera()) + "\n")
    print(
        "method: each variant runs in its own subprocess. StreetWatch rows: the real EdgeWorker (a decode "
        "thread per camera rendering the detector's view, 1 or 2 detection loops, tracking, rules, background "
        "model, evidence, outbox) on N file cameras; naive rows: N OpenCV decode threads feeding one detector "
        "(no tracking/rules). Each runs as fast as possible over the span; capacity = N x span / wall time "
        "(the box is saturated when 'cores busy' ~ cores), so it is the number of streams it keeps in real "
        "time. Peak RSS growth = VmHWM after the run minus RSS before the streams started (the model is "
        "loaded before), divided by N."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
