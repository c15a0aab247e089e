"""The whole retraining loop on the demo's footage, through the commands a model engineer runs:

`edge replay` (YOLOX-Nano) on the demo's street and market clips -> `central ingest-jsonl` -> `central
review` (bulk from a file) -> `harvest_dataset.py` (clean frames, complete labels, negative regions,
dataset.json; a used folder refused) -> `train.py` 2 epochs with --plots and the network blocked ->
`evaluate.py` (old and new on the same val frames) -> a failed `export_onnx.py` (nothing deployed
changes) -> `export_onnx.py` FP32 (+ INT8 when its gate passes), twice for the same sha256 -> `edge
replay` with the new model by manifest -> roll back by setting `model.name` to the old entry.

The clean frames are the edge's own: `edge replay` announces each alert's evidence set (wire 1.2
`media`) and writes its bytes to `OUT.media/`; the test stores them in central's evidence store, which
is what central's media ingest does with the pieces the live edge sends over MQTT
(`central ingest-jsonl` reads only the alerts). It checks each clean frame is the frame behind the
evidence: the decoded clip at the alert's time, at the evidence's size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from streetwatch import demo
from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.edge.manifest import DEFAULT_MANIFEST, file_sha256, load_manifest
from streetwatch.edge.replay import media_folder
from streetwatch.footage import still_scene, write_h264_clip

REPO = Path(__file__).resolve().parents[2]
IMGSZ = 160
T0 = {"cam-street": "2026-03-01T09:00:00Z", "cam-market": "2026-03-01T10:00:00Z"}
GUARD = '''import socket, sys
LOG = {log!r}
def _hook(event, args):
    if event in ("socket.getaddrinfo", "socket.connect"):
        target = args[0] if event == "socket.getaddrinfo" else args[1]
        host = target[0] if isinstance(target, tuple) else target
        if host not in (None, "", "localhost", "127.0.0.1", "::1") and not str(host).startswith("/"):
            with open(LOG, "a") as f:
                f.write(f"{{event}} {{host}}\\n")
            raise OSError(f"network blocked by the test: {{host}}")
sys.addaudithook(_hook)
'''


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None, ok: bool = True,
        timeout: float = 400) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{argv[:3]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


def script(name: str) -> Path:
    return REPO / "scripts" / name


def frame_at(clip: Path, seconds: float) -> np.ndarray:
    """The decoded frame of `clip` shown at `seconds` (the demo clips are 1 frame per second)."""
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and abs(frame.time - seconds) < 0.5:
                return np.asarray(frame.to_ndarray(format="bgr24"))
    raise AssertionError(f"{clip}: no frame at {seconds} s")


def store_clean_frames(jsonl: Path, clip: Path, camera: str, store: EvidenceStore) -> list[str]:
    """Put each alert's clean frame (written by edge replay) into central's store; returns the alert lines."""
    lines = jsonl.read_text().splitlines()
    start = datetime.fromisoformat(T0[camera])
    for line in lines:
        alert = json.loads(line)
        (ref,) = [m for m in alert["media"] if m["kind"] == "clean"]
        clean = (media_folder(jsonl) / f"{ref['sha256']}.jpg").read_bytes()
        assert (ref["width"], ref["height"]) == (alert["evidence"]["width"], alert["evidence"]["height"])
        frame = cv2.imdecode(np.frombuffer(clean, np.uint8), cv2.IMREAD_COLOR)
        seconds = (datetime.fromisoformat(alert["observed_at"]) - start).total_seconds()
        decoded = cv2.resize(frame_at(clip, seconds), (ref["width"], ref["height"]), interpolation=cv2.INTER_AREA)
        evidence = cv2.imdecode(np.frombuffer(base64.b64decode(alert["evidence"]["jpeg_b64"]), np.uint8),
                                cv2.IMREAD_COLOR)
        assert float(np.abs(frame.astype(int) - decoded.astype(int)).mean()) < 4  # the frame behind the evidence
        assert float(np.abs(frame.astype(int) - evidence.astype(int)).max()) > 100  # and nothing drawn on it
        store.put(clean)
    return lines


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mode) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_retraining_loop_on_the_demo_footage(tmp_path: Path, assets_dir: Path, model_dir: Path) -> None:
    work = tmp_path
    clips = {k: v for k, v in demo.build_footage(assets_dir, work).items() if k in T0}
    edge_yaml = work / "edge.yaml"
    edge_yaml.write_text(yaml.safe_dump(demo.edge_config(work, clips, "mqtt://127.0.0.1:1", "3.1.1",
                                                         model_dir=model_dir)))
    # 1. the deployed model finds the demo's cases
    evidence_dir = work / "evidence"
    store = EvidenceStore(evidence_dir)
    lines = []
    for camera, clip in clips.items():
        out = work / f"{camera}.jsonl"
        run("-m", "streetwatch.edge.cli", "replay", clip, "--config", edge_yaml, "--camera", camera, "--out", out,
            "--start-time", T0[camera], "--no-progress", cwd=work)
        lines += store_clean_frames(out, clip, camera, store)
    violations = sorted(json.loads(line)["violation"] for line in lines)
    assert {"illegal_parking", "stacked_goods", "street_vending"} <= set(violations), violations
    (work / "alerts.jsonl").write_text("\n".join(lines) + "\n")
    db = f"sqlite:///{work / 'central.sqlite'}"
    central = work / "central.yaml"
    central.write_text(f"evidence_dir: {evidence_dir}\n")
    base = ["-m", "streetwatch.central.cli", "--database-url", db, "--config", central]
    run(*base, "migrate", cwd=work)
    out = run(*base, "ingest-jsonl", work / "alerts.jsonl", cwd=work).stdout
    assert "0 dead letters" in out
    run(*base, "create-user", "engineer", "--role", "admin", "--password-env", "PW", cwd=work,
        env={"PW": "a long enough password"})
    cases = json.loads(run(*base, "export-cases", cwd=work).stdout)

    # 2. review from a script: one parking case is a false detection (typed as a person would)
    parking = sorted(c["id"] for c in cases if c["violation"] == "illegal_parking")
    others = sorted(c["id"] for c in cases if c["violation"] != "illegal_parking")
    false_one = parking[0]
    (work / "confirm.txt").write_text("".join(f"{i}\n" for i in parking[1:] + others))
    out = run(*base, "review", "confirm", "--file", work / "confirm.txt", "--user", "engineer", cwd=work).stdout
    assert out.count(": confirmed (audit") == len(parking) - 1 + len(others)
    run(*base, "review", "dismiss", str(false_one), "--reason", "False detection", "--user", "engineer", cwd=work)

    # 3. harvest: clean frames, complete labels, negative regions, dataset.json
    ds = work / "dataset"
    harvest = [script("harvest_dataset.py"), "--database-url", db, "--evidence-dir", evidence_dir, "-o", ds,
               "--model-dir", model_dir, "--no-progress"]
    out = run(*harvest, cwd=work).stdout
    record = json.loads((ds / "dataset.json").read_text())
    assert record["pseudo_label_model"]["name"] == "yolox_nano" and len(record["content_sha256"]) == 64
    assert {c["case_id"]: c["decision"] for c in record["cases"]}[false_one] == "dismissed:false_detection"
    metas = {m.stem: (m.parent.name, json.loads(m.read_text())) for m in ds.glob("meta/*/*.json")}
    by_case = {r["case_id"]: r for _, r in metas.values()}
    for stem, (split, meta) in metas.items():
        stored = (ds / "images" / split / f"{stem}.jpg").read_bytes()
        assert hashlib.sha256(stored).hexdigest() == meta["clean_sha256"]  # the clean frame, never the evidence
    assert by_case[false_one]["negative_regions"] and all(b["source"] == "pseudo" for b in by_case[false_one]["boxes"])
    classes = {(b["class"], b["source"]) for r in by_case.values() for b in r["boxes"]}
    assert {("vehicle", "confirmed"), ("vehicle", "pseudo"), ("goods", "confirmed"), ("stall", "confirmed"),
            ("person", "confirmed")} <= classes, classes
    cameras = yaml.safe_load((ds / "cameras.yaml").read_text())
    assert cameras["train"] and cameras["val"] and not set(cameras["train"]) & set(cameras["val"])
    again = run(*harvest, cwd=work, ok=False)
    assert again.returncode == 2 and "not empty" in again.stderr and "--overwrite" in again.stderr
    assert json.loads((ds / "dataset.json").read_text()) == record  # untouched by the refused run
    print(out)

    # 4. train 2 epochs with the plots on and the network blocked (fonts included)
    guard = work / "guard"
    guard.mkdir()
    net_log = work / "network.log"
    (guard / "sitecustomize.py").write_text(GUARD.format(log=str(net_log)))
    offline = {"PYTHONPATH": f"{guard}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "YOLO_CONFIG_DIR": str(work / "yolo-config")}
    runs = work / "runs"
    out = run(script("train.py"), "--data", ds / "data.yaml", "--model", "yolov8n.yaml", "--epochs", "2",
              "--imgsz", IMGSZ, "--batch", "4", "--workers", "0", "--project", runs, "--name", "loop", "--plots",
              cwd=work, env=offline).stdout
    best = runs / "loop" / "weights" / "best.pt"
    assert best.is_file() and "best weights" in out

    # 5. evaluate: old and new on the same val frames, detector cases apart from the background model's
    deploy = work / "deploy"  # the edge's model folder
    deploy.mkdir()
    (deploy / "yolox_nano.onnx").write_bytes((model_dir / "yolox_nano.onnx").read_bytes())
    out = run(script("evaluate.py"), "--data", ds / "data.yaml", "--weights", best, "--imgsz", IMGSZ,
              "--deployed", "yolox_nano", "--model-dir", deploy, "--database-url", db, "--evidence-dir",
              evidence_dir, "--all-cases", cwd=work, env=offline).stdout
    print(out)
    same_frames = out.split("same val frames")[1].split("operational")[0]
    assert "deployed (yolox_nano)" in same_frames and "candidate (best.pt)" in same_frames
    detector_table = out.split("operational (")[1].split("background-model cases")[0]
    deployed_row = next(line for line in detector_table.splitlines() if line.startswith("deployed (yolox_nano)"))
    n_detector = len(parking) - 1 + len([c for c in cases if c["violation"] == "street_vending"])
    assert f"0/{n_detector} (0%)" in deployed_row  # it raised these itself: on clean frames it misses none
    background = out.split("background-model cases")[1]
    assert "deployed (yolox_nano)" in background and "1/1 (100%)" in background  # no goods class: apart

    # 6. a failed export changes nothing deployed
    export = [script("export_onnx.py"), "--weights", best, "--imgsz", IMGSZ, "--name", "street_loop",
              "--classes", ds / "classes.yaml", "--model-dir", deploy, "--dynamic"]
    fresh = files_of(deploy)
    failed = run(*export, "--int8", cwd=work, env=offline, ok=False)  # --int8 without --calib-images
    assert failed.returncode == 2 and files_of(deploy) == fresh  # not even a manifest is created
    run(*export, "--name", "street_probe", cwd=work, env=offline)  # starts the deploy manifest (last --name wins)
    manifest = deploy / "manifest.yaml"
    manifest.chmod(0o644)
    before = files_of(deploy)
    for bad in (["--int8"], ["--name", "yolox_nano"], ["--classes", REPO / "pyproject.toml"]):
        failed = run(*export, *bad, cwd=work, env=offline, ok=False)
        assert failed.returncode == 2 and "are unchanged" in failed.stderr, failed.stderr
        assert files_of(deploy) == before  # every file and the manifest byte-identical, same mode
        load_manifest(manifest)  # and readable

    # 7. export FP32 (+ INT8 when the gate passes); the same weights give the same file
    out = run(*export, "--int8", "--calib-images", ds / "images" / "train", cwd=work, env=offline).stdout
    print(out)
    loaded = load_manifest(manifest)
    names = [m.name for m in loaded.models]
    assert names[:3] == ["yolox_nano", "street_probe", "street_loop"]
    assert ("street_loop-int8" in names) == ("INT8 added" in out) and ("INT8 added" in out or "INT8 not added" in out)
    entry = loaded.entry("street_loop")
    assert entry.file == f"street_loop-{entry.sha256[:12]}.onnx" and file_sha256(deploy / entry.file) == entry.sha256
    assert entry.sha256 == loaded.entry("street_probe").sha256  # reproducible: same best.pt, same bytes
    assert manifest.stat().st_mode & 0o777 == 0o644
    assert not net_log.exists(), net_log.read_text()  # no network at train, evaluate or export time

    # 8. deploy by manifest, replay with the new model; 9. roll back with one config change
    short = write_h264_clip(work / "short.mp4", still_scene(cv2.imread(str(assets_dir / "street" / demo.STREET_PHOTO)),
                                                             seconds=40, fps=1, seed=1), fps=1)
    config = yaml.safe_load(edge_yaml.read_text())
    for name in ("street_loop", "yolox_nano"):
        config["model"] = {"name": name, "manifest": str(manifest), "model_dir": str(deploy)}
        (work / f"edge-{name}.yaml").write_text(yaml.safe_dump(config))
        alerts_out = work / f"replay-{name}.jsonl"
        proc = run("-m", "streetwatch.edge.cli", "replay", short, "--config", work / f"edge-{name}.yaml",
                   "--camera", "cam-street", "--out", alerts_out, "--no-progress", cwd=work)
        assert f"model {name}: using {deploy}" in proc.stderr and "sha256" in proc.stderr
        replayed = [json.loads(line) for line in alerts_out.read_text().splitlines()]
        assert all(a["model"] == {"name": name, "sha256": loaded.entry(name).sha256} for a in replayed)
        if name == "yolox_nano":
            assert replayed, "the rolled-back model raises the parked cars again"
    assert manifest.read_text().startswith(DEFAULT_MANIFEST.read_text())  # the shipped entry kept, as it was
