"""The `central` command: migrate, import-merchants, ingest-jsonl, export-cases, create-user."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from factories import make_alert
from sqlalchemy import select

from streetwatch.central.cli import EXPORT_COLUMNS, main
from streetwatch.central.db import make_engine, make_session_factory, session_scope
from streetwatch.central.models import Alert, Area, User
from streetwatch.central.passwords import verify_password
from streetwatch.edge.alerts import alert_topic

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_MERCHANTS = REPO / "configs" / "merchants.example.geojson"
# inside m-001's zone and 3 m south of m-005's zone (see configs/merchants.example.geojson)
INSIDE = {"lat": 31.30007, "lon": 120.58535, "accuracy_m": 2.0}
NEAR = {"lat": 31.299873, "lon": 120.58535, "accuracy_m": 2.0}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "central.yaml"
    path.write_text(f"evidence_dir: {tmp_path / 'evidence'}\n", encoding="utf-8")
    return path


def test_console_script_migrates_from_the_installed_package(empty_db_url: str, tmp_path: Path) -> None:
    exe = shutil.which("central") or str(Path(sys.executable).parent / "central")
    result = subprocess.run(
        [exe, "--database-url", empty_db_url, "migrate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    assert "newest schema revision" in result.stdout


def test_import_ingest_export_round_trip(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path, settings_file: Path
) -> None:
    code, out, _ = run(capsys, "--database-url", db_url, "import-merchants", str(EXAMPLE_MERCHANTS))
    assert code == 0 and "8 merchants created, 0 updated" in out
    code, out, _ = run(capsys, "--database-url", db_url, "import-merchants", str(EXAMPLE_MERCHANTS))
    assert code == 0 and "0 merchants created, 8 updated" in out

    first = make_alert(location=INSIDE)
    lines = [
        first.to_json(),
        make_alert(
            episode_id=first.episode_id,
            location=INSIDE,
            observed_at=first.observed_at + timedelta(minutes=15),
        ).to_json(),
        make_alert(violation="stacked_goods", location=NEAR).to_json(),
        b"{broken",
    ]
    jsonl = tmp_path / "alerts.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    code, out, _ = run(
        capsys, "--database-url", db_url, "--config", str(settings_file), "ingest-jsonl", str(jsonl)
    )
    assert code == 0
    assert "4 alerts: 2 opened a case, 1 joined a case, 0 pending sightings, 0 duplicates, 1 dead letters" in out
    assert "dead letter: not JSON" in out

    code, out, _ = run(capsys, "--database-url", db_url, "export-cases", "--format", "json")
    cases = json.loads(out)
    assert code == 0 and len(cases) == 2
    parking = next(c for c in cases if c["violation"] == "illegal_parking")
    goods = next(c for c in cases if c["violation"] == "stacked_goods")
    assert (parking["merchant_id"], parking["merchant_name"], parking["attribution_method"]) == (
        "m-001",
        "Golden Noodle House",
        "inside_zone",
    )
    assert (parking["status"], parking["alert_count"]) == ("new", 2)
    assert parking["lat"] == pytest.approx(INSIDE["lat"]) and parking["lon"] == pytest.approx(INSIDE["lon"])
    assert (goods["merchant_id"], goods["attribution_method"]) == ("m-005", "nearest")
    assert goods["attribution_distance_m"] == pytest.approx(3.0, abs=0.1)

    out_file = tmp_path / "cases.csv"
    code, _, err = run(
        capsys, "--database-url", db_url, "export-cases", "--format", "csv", "--output", str(out_file)
    )
    rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8"))))
    assert code == 0 and "2 cases written" in err
    assert tuple(rows[0].keys()) == EXPORT_COLUMNS
    assert {(r["id"], r["merchant_id"], r["status"], r["alert_count"]) for r in rows} == {
        (str(c["id"]), c["merchant_id"], c["status"], str(c["alert_count"])) for c in cases
    }


def test_import_errors_exit_1_naming_file_feature_and_field(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.geojson"
    doc = json.loads(EXAMPLE_MERCHANTS.read_text(encoding="utf-8"))
    doc["features"][2]["properties"]["name"] = ""
    bad.write_text(json.dumps(doc), encoding="utf-8")
    code, _, err = run(capsys, "--database-url", db_url, "import-merchants", str(bad))
    assert code == 1
    assert f"{bad}: feature 2: field 'name'" in err


def test_create_user(
    capsys: pytest.CaptureFixture[str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVIEWER_PASSWORD", "correct horse battery")
    factory = make_session_factory(make_engine(db_url))
    with session_scope(factory) as session:
        session.add(Area(id="gusu", name="Gusu District", level="district"))
    base = ["--database-url", db_url, "create-user"]
    code, out, _ = run(
        capsys, *base, "wang", "--role", "reviewer", "--area", "gusu", "--password-env", "REVIEWER_PASSWORD"
    )
    assert code == 0 and "user wang created (reviewer, area gusu)" in out
    code, _, err = run(capsys, *base, "wang", "--password-env", "REVIEWER_PASSWORD")
    assert code == 1 and "user 'wang' already exists" in err
    code, _, err = run(capsys, *base, "li", "--area", "nowhere", "--password-env", "REVIEWER_PASSWORD")
    assert code == 1 and "--area: unknown area 'nowhere'" in err
    code, _, err = run(capsys, *base, "li", "--password-env", "NO_SUCH_VARIABLE_SET")
    assert code == 1 and "NO_SUCH_VARIABLE_SET is not set" in err
    with session_scope(factory) as session:
        users = session.scalars(select(User)).all()
    assert [(u.username, u.role, u.area_id, u.is_active) for u in users] == [
        ("wang", "reviewer", "gusu", True)
    ]
    assert verify_password("correct horse battery", users[0].password_hash)
    assert not verify_password("wrong", users[0].password_hash)
    assert "correct horse" not in users[0].password_hash


def test_serve_ingests_from_the_broker_until_interrupted(
    mqtt_broker: object, db_url: str, tmp_path: Path
) -> None:
    edge_id = f"box-{uuid.uuid4().hex[:8]}"
    group = f"t{uuid.uuid4().hex[:8]}"
    config = tmp_path / "central.yaml"
    config.write_text(
        "broker:\n"
        f"  url: {mqtt_broker.url}\n"  # type: ignore[attr-defined]
        f"  protocol: '{mqtt_broker.protocol}'\n"  # type: ignore[attr-defined]
        f"  client_id: {group}-serve\n"
        f"  subscription: $share/{group}/streetwatch/v1/alerts/{edge_id}/+\n"
        f"evidence_dir: {tmp_path / 'evidence'}\n",
        encoding="utf-8",
    )
    exe = shutil.which("central") or str(Path(sys.executable).parent / "central")
    proc = subprocess.Popen(
        [exe, "--database-url", db_url, "--config", str(config), "serve", "--no-web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    factory = make_session_factory(make_engine(db_url))
    alert = make_alert(edge_id=edge_id)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    publisher.connect(mqtt_broker.host, mqtt_broker.port)  # type: ignore[attr-defined]
    publisher.loop_start()
    try:
        deadline = time.monotonic() + 60
        stored = False
        while not stored and time.monotonic() < deadline and proc.poll() is None:
            # publish until the worker has subscribed and stored it (redeliveries are idempotent)
            publisher.publish(alert_topic(edge_id, "cam-1"), alert.to_json(), qos=1).wait_for_publish(5)
            time.sleep(0.5)
            with session_scope(factory) as session:
                stored = session.get(Alert, alert.alert_id) is not None
        assert stored, "serve did not ingest the alert"
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "serving ingest only" in output and f"subscribed to $share/{group}" in output


# ------------------------------------------------------------------ global options after the command


@pytest.mark.parametrize(
    "order",
    [
        ["--config", "{cfg}", "--database-url", "{db}", "export-lifecycle"],
        ["export-lifecycle", "--config", "{cfg}", "--database-url", "{db}"],
        ["--database-url", "{db}", "export-lifecycle", "--config", "{cfg}"],
        ["-v", "--config", "{cfg}", "export-lifecycle", "-v", "--database-url", "{db}"],
    ],
    ids=["before", "after", "mixed", "verbose-both"],
)
def test_global_options_work_before_and_after_the_command(
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    tmp_path: Path,
    session_factory: object,
    central_settings: object,
    order: list[str],
) -> None:
    from workflow_support import T0, open_episode

    case_id = open_episode(session_factory, central_settings, at=T0, episode_id="ep-cli")  # type: ignore[arg-type]
    cfg = tmp_path / "central.yaml"
    cfg.write_text(
        "workflow:\n  event_classes:\n    illegal_parking: {code: SZ-0301, category: 市容, name: 违停}\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, *[a.format(cfg=cfg, db=db_url) for a in order])
    assert code == 0, err
    assert [(r["case_id"], r["event_code"]) for r in json.loads(out)] == [(case_id, "SZ-0301")]  # the file's code


def test_serve_reads_the_config_named_after_the_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "central.yaml"
    bad.write_text("workflow: {rectify_window_min: 0}\n", encoding="utf-8")
    code, _, err = run(capsys, "serve", "--config", str(bad), "--no-web")
    assert code == 1 and "unrecognized arguments" not in err
    assert f"{bad}: workflow.rectify_window_min: Input should be greater than 0 (got 0)" in err


def test_the_readme_serve_line_parses_and_its_file_loads() -> None:
    """`central serve --config configs/central.example.yaml` as docs/central-guide.md has it (not run
    here: the example's broker is the shared one on 1883; tests/test_docs.py runs it with its own)."""
    from streetwatch.central.cli import build_parser
    from streetwatch.central.config import load_settings

    args = build_parser().parse_args(["serve", "--config", "configs/central.example.yaml"])
    assert (args.command, args.config, args.no_web) == ("serve", Path("configs/central.example.yaml"), False)
    assert load_settings(REPO / args.config, environ={}).broker.url == "mqtt://127.0.0.1:1883"


def test_version_and_config_schema(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == "central (streetwatch) 0.1.0"
    assert main(["config-schema"]) == 0  # needs no settings: works with a broken environment too
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "CentralSettings"
    assert {"database_url", "broker", "web", "workflow", "cases"} <= set(schema["properties"])
