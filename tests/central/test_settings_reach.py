"""One settings object reaches every part of `central serve`: the rectify window set in the YAML
file, or in $STREETWATCH_RECTIFY_WINDOW_MIN, is the deadline of the workflow worker's timer AND of
the web's redispatch after a failed verification (issue 16: the web used to fall back to 30 min).

`central serve --config FILE` runs as a real process (the form docs/central-guide.md shows: the
option after the command) with a real broker, the database under test and the web app on a free port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2 as httpx  # the dev extra installs httpx2 (starlette's TestClient); plain httpx is not declared
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support import free_port
from workflow_support import add_merchant, end_episode, open_episode

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.config import CentralSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import Case, CaseTimer, User

WINDOW_MIN = 12  # not the default (30)


def _wait(what: str, check: Callable[[], bool], proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"central serve exited ({proc.returncode}) before {what}: {proc.communicate()[0]}")
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _timers(factory: sessionmaker[Session], case_id: int) -> list[tuple[str, timedelta]]:
    with factory() as session:
        rows = session.scalars(select(CaseTimer).where(CaseTimer.case_id == case_id).order_by(CaseTimer.id))
        return [(t.kind, t.due_at - t.started_at) for t in rows]


def _status(factory: sessionmaker[Session], case_id: int) -> str:
    with factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.status


@pytest.mark.slow
@pytest.mark.parametrize("source", ["yaml", "env"])
def test_the_rectify_window_reaches_the_worker_timer_and_the_web_redispatch(
    source: str,
    mqtt_broker: object,
    db_url: str,
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    tmp_path: Path,
) -> None:
    add_merchant(session_factory, "m1")
    with session_scope(session_factory) as session:
        session.add(User(username="admin", password_hash="x", role="admin"))
    token = issue_token(session_factory, username="admin", name="t").secret
    now = datetime.now(UTC)
    case_id = open_episode(session_factory, central_settings, at=now - timedelta(minutes=1), episode_id="ep-1")

    group, port = f"t{uuid.uuid4().hex[:8]}", free_port()
    window = f"rectify_window_min: {WINDOW_MIN}, " if source == "yaml" else ""
    config = tmp_path / "central.yaml"
    config.write_text(
        f"broker: {{url: '{mqtt_broker.url}', protocol: '{mqtt_broker.protocol}', "  # type: ignore[attr-defined]
        f"client_id: {group}, subscription: '$share/{group}/streetwatch/v1/alerts/box-{group}/+'}}\n"
        f"web: {{port: {port}, mode: development}}\n"
        f"workflow: {{{window}tick_interval_s: 0.2}}\n"
        f"evidence_dir: {tmp_path / 'evidence'}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_") or "ASSETS" in k or "MODEL" in k}
    if source == "env":
        env["STREETWATCH_RECTIFY_WINDOW_MIN"] = str(WINDOW_MIN)
    exe = shutil.which("central") or str(Path(sys.executable).parent / "central")
    proc = subprocess.Popen(
        [exe, "serve", "--config", str(config), "--database-url", db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    try:
        _wait("the web app", lambda: _up(api), proc)
        assert api.post(f"/api/cases/{case_id}/confirm").status_code == 200
        _wait("the worker's notification", lambda: _status(session_factory, case_id) == "notified", proc)
        end_episode(session_factory, central_settings, at=datetime.now(UTC), episode_id="ep-1")
        _wait("self-rectification", lambda: _status(session_factory, case_id) == "rectified", proc)
        verified_at = datetime.now(UTC)
        failed = api.post(f"/api/workflow/cases/{case_id}/verify", json={"passed": False, "note": "back again"})
        assert failed.status_code == 200 and failed.json()["status"] == "notified"
        shown = datetime.fromisoformat(api.get(f"/api/workflow/cases/{case_id}").json()["rectify_by"])
        assert abs(shown - (verified_at + timedelta(minutes=WINDOW_MIN))) < timedelta(seconds=30)
    finally:
        api.close()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    minutes = timedelta(minutes=WINDOW_MIN)
    assert _timers(session_factory, case_id) == [("rectify", minutes), ("redispatch", minutes)]


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/api/me").status_code == 200
    except httpx.TransportError:
        return False
