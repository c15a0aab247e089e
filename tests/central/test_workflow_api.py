"""The workflow through the JSON API on a controllable clock: the case step and history, the penalty a
third strike needs before closing, verification (passed: close; failed: back to dispatch with a new
timer that an old `ended` cannot satisfy), complaints, inspections due, statistics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web_forms import csrf_field, form_login
from workflow_support import T0, add_merchant, end_episode, open_episode, reviewer, undo_passed

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.cli import main as cli_main
from streetwatch.central.config import CentralSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import CaseTimer, User
from streetwatch.central.passwords import hash_password
from streetwatch.central.review import ReviewService
from streetwatch.central.workflow.clock import ManualClock
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.worker import WorkflowEngine

MIN = timedelta(minutes=1)
DEV = WebSettings(mode="development", secret_key="a" * 40, cookie_secure=False)  # type: ignore[arg-type]


@dataclass
class World:
    client: TestClient
    headers: dict[str, str]
    clock: ManualClock
    engine: WorkflowEngine
    factory: sessionmaker[Session]
    central: CentralSettings
    episodes: int = 0

    def violation(self, *, self_rectify: bool = False) -> int:
        self.episodes += 1
        episode = f"ep-{self.episodes}"
        case_id = open_episode(self.factory, self.central, at=self.clock(), episode_id=episode)
        ReviewService(self.factory, clock=undo_passed(self.clock)).confirm(case_id, reviewer=reviewer(self.factory))
        self.engine.tick()
        if self_rectify:
            end_episode(self.factory, self.central, at=self.clock() + 5 * MIN, episode_id=episode)
        self.clock.advance(31 * MIN)
        self.engine.tick()
        return case_id


@pytest.fixture()
def world(session_factory: sessionmaker[Session], central_settings: CentralSettings) -> Iterator[World]:
    add_merchant(session_factory, "m1")
    with session_scope(session_factory) as session:
        session.add(User(username="admin", password_hash="x", role="admin"))
    token = issue_token(session_factory, username="admin", name="t").secret
    clock = ManualClock(T0)
    app = build_app(central_settings.model_copy(update={"web": DEV}), session_factory, clock=clock)
    engine = WorkflowEngine(session_factory, WorkflowSettings(), clock=clock)
    with TestClient(app) as client:
        yield World(client, {"Authorization": f"Bearer {token}"}, clock, engine, session_factory, central_settings)


def test_third_strike_needs_a_penalty_then_closes(world: World) -> None:
    cases = [world.violation() for _ in range(3)]
    c = world.client
    step = c.get(f"/api/workflow/cases/{cases[2]}", headers=world.headers).json()
    assert (step["strike_step"], step["strike_action"], step["status"]) == (3, "penalty", "escalated")
    assert [h["action"] for h in step["history"]] == ["confirm", "notify", "inspection"]
    refused = c.post(f"/api/workflow/cases/{cases[2]}/close", json={}, headers=world.headers)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"case {cases[2]}: a third-strike case needs a penalty decision before it can be closed"
    )
    decided = c.post(f"/api/workflow/cases/{cases[2]}/penalty", json={"decision": "fine"}, headers=world.headers)
    assert decided.status_code == 200 and decided.json()["close_blocker"] is None
    unverified = c.post(f"/api/workflow/cases/{cases[2]}/close", json={"note": "paid"}, headers=world.headers)
    assert unverified.status_code == 409 and "verification step" in unverified.json()["detail"]
    assert c.post(f"/api/workflow/cases/{cases[2]}/verify", json={"passed": True}, headers=world.headers).is_success
    closed = c.post(f"/api/workflow/cases/{cases[2]}/close", json={"note": "paid"}, headers=world.headers)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert c.get("/api/workflow/cases/99999", headers=world.headers).status_code == 404


def test_failed_verification_goes_back_to_dispatch_with_a_new_timer(world: World) -> None:
    case_id = world.violation(self_rectify=True)
    c = world.client
    assert c.get(f"/api/workflow/cases/{case_id}", headers=world.headers).json()["status"] == "rectified"
    failed = c.post(
        f"/api/workflow/cases/{case_id}/verify", json={"passed": False, "note": "goods back"}, headers=world.headers
    )
    assert failed.status_code == 200 and failed.json()["status"] == "notified"
    step = c.get(f"/api/workflow/cases/{case_id}", headers=world.headers).json()
    assert step["rectify_by"] is not None
    world.clock.advance(5 * MIN)
    assert world.engine.tick().resolved == {}  # the old `ended` does not count as a new clear view
    world.clock.advance(25 * MIN)
    assert world.engine.tick().resolved == {case_id: "inspection"}
    passed = c.post(f"/api/workflow/cases/{case_id}/verify", json={"passed": True}, headers=world.headers)
    assert passed.status_code == 200
    assert c.post(f"/api/workflow/cases/{case_id}/close", json={}, headers=world.headers).json()["status"] == "closed"
    lifecycle = {r["case_id"]: r for r in c.get("/api/export/lifecycle.json", headers=world.headers).json()}
    stages = [h["stage"] for h in lifecycle[case_id]["history"]]
    assert stages == ["file", "dispatch", "feedback", "dispatch", "handle", "verify", "close"]
    with world.factory() as session:
        kinds = session.scalars(select(CaseTimer.kind).where(CaseTimer.case_id == case_id).order_by(CaseTimer.id))
        assert list(kinds) == ["rectify", "redispatch"]


def test_complaints_grades_and_inspections_due_through_the_api(world: World) -> None:
    c = world.client
    cases = {world.violation() for _ in range(2)}
    assert (
        c.post("/api/workflow/merchants/m1/complaints", json={"note": "blocked"}, headers=world.headers).status_code
        == 201
    )
    assert c.post("/api/workflow/merchants/nope/complaints", json={}, headers=world.headers).status_code == 404
    due = c.get("/api/workflow/inspections/due", headers=world.headers).json()
    routine = [d for d in due if d["reason"] == "routine"]
    assert [(d["merchant_id"], d["grade"], d["frequency"]) for d in routine] == [("m1", "yellow", "weekly")]
    assert {d["case_id"] for d in due if d["reason"] == "case"} == cases  # nobody rectified them
    roads = c.get("/api/workflow/roads", headers=world.headers).json()
    assert [(r["road"], r["grade"]) for r in roads] == [("Tea Street", "yellow")]
    stats = c.get("/api/stats?days=7", headers=world.headers).json()
    assert stats["total"] == 2 and stats["top_merchants"] == [["Shop m1", 2]]
    assert c.get("/api/stats", headers={}).status_code == 401


def test_cli_exports_the_lifecycle_as_json_and_csv(world: World, db_url: str, tmp_path: Path) -> None:
    case_id = world.violation(self_rectify=True)
    out = tmp_path / "lifecycle.json"
    assert cli_main(["--database-url", db_url, "export-lifecycle", "--output", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["case_id"], r["stage"], r["stage_zh"], r["event_code"]) for r in rows] == [
        (case_id, "feedback", "反馈", "SO-03")
    ]
    csv_out = tmp_path / "lifecycle.csv"
    assert cli_main(["--database-url", db_url, "export-lifecycle", "--format", "csv", "--output", str(csv_out)]) == 0
    assert csv_out.read_text(encoding="utf-8").splitlines()[1].startswith(f"{case_id},feedback,反馈,rectified,SO-03")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/workflow/cases/9223372036854775808"),
        ("post", "/api/workflow/cases/2147483648/close"),
        ("get", "/api/workflow/cases/0"),
    ],
)
def test_ids_beyond_the_column_are_refused_at_the_edge(world: World, method: str, path: str) -> None:
    response = world.client.request(method, path, headers=world.headers, json={} if method == "post" else None)
    assert response.status_code == 422 and response.json()["detail"]


def test_open311_ignores_ids_that_cannot_exist(world: World) -> None:
    # Open311 answers ids beyond the column with the spec's 404 list, not 422 (test_open311.py)
    beyond = world.client.get("/open311/v2/requests/2147483648.json", headers=world.headers)
    assert beyond.status_code == 404 and beyond.json()[0]["code"] == 404
    case_id = world.violation()
    found = world.client.get(
        "/open311/v2/requests.json", params={"service_request_id": f"{case_id},99999999999"}, headers=world.headers
    )
    assert found.status_code == 200 and [r["service_request_id"] for r in found.json()] == [str(case_id)]


# ------------------------------------------------------------------------------------ the page's forms

PAGE_PASSWORD = "inspect-the-kerb-2026"


def _page_login(world: World) -> TestClient:
    """Log a city-wide reviewer in through the login form (the forms need its session and CSRF)."""
    with session_scope(world.factory) as session:
        session.add(User(username="inspector", password_hash=hash_password(PAGE_PASSWORD), role="admin"))
    return form_login(world.client, "inspector", PAGE_PASSWORD)


def _submit(client: TestClient, case_id: int, action: str, data: dict[str, str]) -> str:
    """Post one of the workflow page's forms as the browser would, follow the redirect, return the page."""
    page = client.get(f"/cases/{case_id}/workflow").text
    assert f'action="http://testserver/cases/{case_id}/workflow/{action}"' in page, f"no {action} form on the page"
    response = client.post(f"/cases/{case_id}/workflow/{action}", data={**data, "csrf_token": csrf_field(page)})
    assert response.status_code == 200 and response.url.path == f"/cases/{case_id}/workflow"
    return response.text


def test_the_workflow_page_records_the_penalty_then_closes_the_third_strike(world: World) -> None:
    cases = [world.violation() for _ in range(3)]
    client = _page_login(world)
    page = client.get(f"/cases/{cases[2]}/workflow").text
    assert 'data-testid="penalty-form"' in page and "disabled" in page  # closing waits for the penalty
    page = _submit(client, cases[2], "close", {"note": "too early"})
    assert "是第三次违规：请先登记处罚再结案" in page and 'class="flash error"' in page
    page = _submit(client, cases[2], "penalty", {"decision": "fine of 200 yuan"})  # not confirmed: refused
    assert "请勾选确认后再登记处罚。" in page and 'data-testid="penalty-form"' in page
    page = _submit(client, cases[2], "penalty", {"decision": "fine of 200 yuan", "confirmed": "1"})
    assert f"案件 #{cases[2]}：处罚已登记。" in page and "处罚：fine of 200 yuan" in page
    assert 'data-testid="penalty-form"' not in page
    page = _submit(client, cases[2], "close", {"note": "fine paid"})
    assert f"案件 #{cases[2]} 已派遣：请先核查" in page  # an inspector verifies first
    page = _submit(client, cases[2], "verify", {"result": "passed", "note": "kerb clear"})
    assert f"案件 #{cases[2]} 核查通过。" in page
    page = _submit(client, cases[2], "close", {"note": "fine paid"})
    assert f"案件 #{cases[2]} 已结案。" in page and "状态 <b>已结案</b>" in page
    step = client.get(f"/api/workflow/cases/{cases[2]}", headers=world.headers).json()
    assert [(h["action"], h["by"]) for h in step["history"][-3:]] == [
        ("penalty", "inspector"),
        ("verified", "inspector"),
        ("close", "inspector"),
    ]


def test_the_workflow_page_sends_a_failed_verification_back_to_dispatch(world: World) -> None:
    case_id = world.violation(self_rectify=True)
    client = _page_login(world)
    page = _submit(client, case_id, "verify", {"result": "failed", "note": "goods back on the kerb"})
    assert f"案件 #{case_id} 未整改：重新派遣。" in page and "状态 <b>已通知商户</b>" in page
    assert 'data-testid="verify-form"' not in page and 'data-testid="deadline"' in page
    forged = client.post(f"/cases/{case_id}/workflow/close", data={"note": "x", "csrf_token": "forged"})
    assert forged.status_code == 403
    bad = client.post(
        f"/cases/{case_id}/workflow/verify", data={"result": "maybe", "csrf_token": csrf_field(page)}
    )
    assert bad.status_code == 422
