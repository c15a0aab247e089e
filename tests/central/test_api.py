"""The JSON API and the page doors: tokens, areas, review actions with audit rows, CSRF, rate limit.

Cases come through the real ingest path (alerts with real street-photo JPEG evidence); the database
is SQLite or PostgreSQL (tests/central/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from review_seed import PASSWORD, add_case, seed_cases, seed_city, street_jpeg
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from web_forms import csrf_field, form_login

from streetwatch.central.api.login_limit import Block, LoginRateLimiter
from streetwatch.central.api.tokens import issue_token, revoke_token
from streetwatch.central.app import SESSION_COOKIE, build_app
from streetwatch.central.config import CentralSettings, InsecureSettings, WebSettings, load_settings
from streetwatch.central.db import session_scope
from streetwatch.central.evidence_store import EvidenceStore
from streetwatch.central.models import Alert, AuditLog, Case, LoginFailure

DEV_SECURITY = WebSettings(mode="development", secret_key="x" * 40, cookie_secure=False)  # type: ignore[arg-type]


@dataclass
class World:
    client: TestClient
    factory: sessionmaker[Session]
    settings: CentralSettings
    cases: dict[str, int]
    tokens: dict[str, str]
    token_ids: dict[str, int]
    jpegs: list[bytes]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture()
def world(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> Iterator[World]:
    seed_city(session_factory)
    jpegs = [
        street_jpeg(street_dir, "kerb_parked_cars_street.jpg"),
        street_jpeg(street_dir, "market_hanoi_goods_on_ground.jpg"),
    ]
    cases = seed_cases(session_factory, central_settings, jpegs)
    issued = {
        u: issue_token(session_factory, username=u, name="test") for u in ("admin", "city", "north", "south", "street")
    }
    app = build_app(central_settings.model_copy(update={"web": DEV_SECURITY}), session_factory)
    with TestClient(app) as client:
        yield World(
            client,
            session_factory,
            central_settings,
            cases,
            {u: t.secret for u, t in issued.items()},
            {u: t.id for u, t in issued.items()},
            jpegs,
        )


def _audit(factory: sessionmaker[Session], case_id: int) -> list[tuple[str, str, dict[str, object]]]:
    with factory() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.case_id == case_id).order_by(AuditLog.id))
        return [(r.actor, r.action, dict(r.detail)) for r in rows]


# ------------------------------------------------------------------------------------ tokens


def test_no_token_is_401(world: World) -> None:
    response = world.client.get("/api/cases")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer sw_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_bad_token_is_401(world: World, header: str) -> None:
    response = world.client.get("/api/cases", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["detail"] in ("Invalid or revoked token", "Not authenticated")


def test_revoked_token_is_401(world: World) -> None:
    headers = world.auth("north")
    assert world.client.get("/api/me", headers=headers).status_code == 200
    response = world.client.delete(f"/api/tokens/{world.token_ids['north']}", headers=headers)
    assert response.status_code == 204
    response = world.client.get("/api/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked token"}
    actions = [a for _, a, _ in _audit_all(world.factory)]
    assert actions.count("token_revoke") == 1


def _audit_all(factory: sessionmaker[Session]) -> list[tuple[str, str, dict[str, object]]]:
    with factory() as s:
        return [(r.actor, r.action, dict(r.detail)) for r in s.scalars(select(AuditLog).order_by(AuditLog.id))]


def test_revoke_through_the_service_is_401_too(world: World) -> None:
    assert revoke_token(world.factory, world.token_ids["south"], actor="ops") is True
    assert revoke_token(world.factory, world.token_ids["south"], actor="ops") is False
    assert world.client.get("/api/cases", headers=world.auth("south")).status_code == 401


def test_only_admins_issue_tokens_and_tokens_are_stored_hashed(world: World) -> None:
    body = {"username": "south", "name": "mobile app"}
    denied = world.client.post("/api/tokens", json=body, headers=world.auth("north"))
    assert denied.status_code == 403
    assert denied.json() == {"detail": "admin role required"}
    created = world.client.post("/api/tokens", json=body, headers=world.auth("admin"))
    assert created.status_code == 201
    secret = created.json()["token"]
    me = world.client.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["username"] == "south"
    with world.factory() as s:
        from streetwatch.central.models import ApiToken

        stored = [t.token_hash for t in s.scalars(select(ApiToken))]
    assert secret not in stored and all(len(h) == 64 for h in stored)
    missing = world.client.post("/api/tokens", json={"username": "nobody"}, headers=world.auth("admin"))
    assert missing.status_code == 404
    assert missing.json() == {"detail": "username: no active user 'nobody'"}


def test_a_user_cannot_revoke_someone_elses_token(world: World) -> None:
    response = world.client.delete(f"/api/tokens/{world.token_ids['south']}", headers=world.auth("north"))
    assert response.status_code == 404
    assert response.json() == {"detail": f"token {world.token_ids['south']} not found"}
    assert world.client.get("/api/me", headers=world.auth("south")).status_code == 200


# ------------------------------------------------------------------------------------ reading


def _ids(response_json: dict[str, Any]) -> set[int]:
    return {int(item["id"]) for item in response_json["data"]}


@pytest.mark.parametrize(
    ("user", "names"),
    [
        ("admin", {"tea", "noodle", "fruit", "north-poly"}),
        ("city", {"tea", "noodle", "fruit", "north-poly"}),
        ("north", {"tea", "noodle", "north-poly"}),
        ("street", {"tea", "noodle"}),
        ("south", {"fruit"}),
    ],
)
def test_case_list_is_limited_to_the_users_area(world: World, user: str, names: set[str]) -> None:
    response = world.client.get("/api/cases", headers=world.auth(user))
    assert response.status_code == 200
    body = response.json()
    assert _ids(body) == {world.cases[n] for n in names}
    assert body["count"] == len(names) and body["count_capped"] is False


def test_case_list_shape_order_and_filters(world: World) -> None:
    body = world.client.get("/api/cases", headers=world.auth("city")).json()
    priorities = [(c["priority"], c["first_seen"]) for c in body["data"]]
    assert priorities == sorted(priorities, key=lambda p: (-p[0], p[1]))
    tea = next(c for c in body["data"] if c["id"] == world.cases["tea"])
    assert tea["merchant"] == {"id": "m-tea", "name": "Lotus Tea House", "address": "12 Tea Street"}
    assert tea["attribution"] == {"method": "inside_zone", "distance_m": 0.0}
    assert tea["alert_count"] == 3 and tea["area_id"] == "north-st1"
    assert tea["evidence_url"].startswith("/evidence/")
    noodle = next(c for c in body["data"] if c["id"] == world.cases["noodle"])
    assert noodle["attribution"]["method"] == "nearest"
    assert 1.5 < noodle["attribution"]["distance_m"] < 2.5
    only = world.client.get("/api/cases?violation=stacked_goods", headers=world.auth("city")).json()
    assert _ids(only) == {world.cases["fruit"]}
    by_merchant = world.client.get("/api/cases?merchant=m-noodle", headers=world.auth("city")).json()
    assert _ids(by_merchant) == {world.cases["noodle"]}
    by_area = world.client.get("/api/cases?area=south", headers=world.auth("city")).json()
    assert _ids(by_area) == {world.cases["fruit"]}
    confirmed = world.client.get("/api/cases?status=confirmed", headers=world.auth("city")).json()
    assert confirmed == {"data": [], "count": 0, "count_capped": False, "next_cursor": None}


def test_paging_with_cursor(world: World) -> None:
    first = world.client.get("/api/cases?limit=3", headers=world.auth("city")).json()
    assert len(first["data"]) == 3 and first["next_cursor"]
    rest = world.client.get(f"/api/cases?limit=3&after={first['next_cursor']}", headers=world.auth("city")).json()
    assert len(rest["data"]) == 1 and rest["next_cursor"] is None
    assert _ids(first).isdisjoint(_ids(rest))


def test_case_detail_has_alerts_and_audit(world: World) -> None:
    response = world.client.get(f"/api/cases/{world.cases['tea']}", headers=world.auth("north"))
    assert response.status_code == 200
    body = response.json()
    assert len(body["alerts"]) == 3 and {a["camera_id"] for a in body["alerts"]} == {"cam-1"}
    assert body["audit"] == []


def test_alerts_carry_their_boxes_and_evidence_size(world: World) -> None:
    # What training needs to label an evidence image through the API: boxes in its pixels, its size.
    tea = world.cases["tea"]
    body = world.client.get(f"/api/cases/{tea}", headers=world.auth("north")).json()
    assert body["camera_id"] == "cam-1"
    for alert in body["alerts"]:
        assert alert["objects"] == [{"cls": "car", "score": 0.82, "bbox": [100.0, 200.0, 380.0, 360.0]}]
        assert alert["evidence"] == {"width": 480, "height": 320}
    paged = world.client.get(f"/api/cases/{tea}/alerts?limit=1", headers=world.auth("north")).json()
    assert paged["data"] == body["alerts"][:1]
    one = world.client.get(f"/api/alerts/{body['alerts'][0]['alert_id']}", headers=world.auth("north")).json()
    assert one == body["alerts"][0]


def test_alerts_stored_before_objects_and_size_show_none(world: World) -> None:
    tea = world.cases["tea"]
    with session_scope(world.factory) as session:
        alerts = list(session.scalars(select(Alert).where(Alert.case_id == tea).order_by(Alert.alert_id)))
        alerts[0].payload = {k: v for k, v in alerts[0].payload.items() if k not in ("objects", "evidence")}
        bad_box = {"cls": "car", "score": 0.5, "bbox": [1, 2]}
        alerts[1].payload = {**alerts[1].payload, "objects": [bad_box, alerts[1].payload["objects"][0]]}
        old, partial = alerts[0].alert_id, alerts[1].alert_id
    body = world.client.get(f"/api/cases/{tea}", headers=world.auth("north")).json()
    by_id = {a["alert_id"]: a for a in body["alerts"]}
    assert (by_id[old]["objects"], by_id[old]["evidence"]) == ([], None)
    assert [o["bbox"] for o in by_id[partial]["objects"]] == [[100.0, 200.0, 380.0, 360.0]]  # the bad box left out


@pytest.mark.parametrize(("user", "name"), [("south", "tea"), ("north", "fruit"), ("street", "north-poly")])
def test_case_outside_the_area_is_404(world: World, user: str, name: str) -> None:
    case_id = world.cases[name]
    response = world.client.get(f"/api/cases/{case_id}", headers=world.auth(user))
    assert response.status_code == 404
    assert response.json() == {"detail": f"case {case_id} not found"}
    acted = world.client.post(f"/api/cases/{case_id}/confirm", headers=world.auth(user))
    assert acted.status_code == 404
    assert acted.json() == {"detail": f"case {case_id} not found"}
    assert _audit(world.factory, case_id) == []


def test_merchants_by_area(world: World) -> None:
    north = world.client.get("/api/merchants", headers=world.auth("north")).json()
    assert [m["id"] for m in north["data"]] == ["m-noodle", "m-tea"]
    city = world.client.get("/api/merchants?q=fruit", headers=world.auth("city")).json()
    assert [m["id"] for m in city["data"]] == ["m-fruit"] and city["count"] == 1
    hidden = world.client.get("/api/merchants/m-fruit", headers=world.auth("north"))
    assert hidden.status_code == 404
    assert hidden.json() == {"detail": "merchant 'm-fruit' not found"}


def test_alert_by_id_respects_the_area(world: World) -> None:
    with world.factory() as s:
        alert_id = s.scalars(select(Alert.alert_id).where(Alert.case_id == world.cases["fruit"])).first()
    assert world.client.get(f"/api/alerts/{alert_id}", headers=world.auth("south")).status_code == 200
    hidden = world.client.get(f"/api/alerts/{alert_id}", headers=world.auth("north"))
    assert hidden.status_code == 404
    assert hidden.json() == {"detail": f"alert {alert_id!r} not found"}


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("get", "/api/cases?status=bogus", None, ["query", "status"]),
        ("get", "/api/cases?limit=0", None, ["query", "limit"]),
        ("get", "/api/cases?limit=201", None, ["query", "limit"]),
        ("get", "/api/cases/abc", None, ["path", "case_id"]),
        ("post", "/api/cases/{tea}/dismiss", {}, ["body", "reason"]),
        ("post", "/api/cases/{tea}/dismiss", {"reason": ""}, ["body", "reason"]),
        ("post", "/api/cases/{tea}/dismiss", {"reason": "x" * 201}, ["body", "reason"]),
        ("post", "/api/cases/{tea}/merge", {"into_case_id": "seven"}, ["body", "into_case_id"]),
        ("post", "/api/cases/{tea}/merge", {"into_case_id": 0}, ["body", "into_case_id"]),
        ("post", "/api/cases/{tea}/reassign", {"merchant_id": "m-tea", "extra": 1}, ["body", "extra"]),
    ],
)
def test_bad_input_is_422_and_names_the_field(
    world: World, method: str, path: str, body: dict[str, object] | None, loc: list[str]
) -> None:
    url = path.format(tea=world.cases["tea"])
    response = world.client.request(method.upper(), url, json=body, headers=world.auth("north"))
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]
    assert _audit(world.factory, world.cases["tea"]) == []


def test_bad_cursor_is_422(world: World) -> None:
    response = world.client.get("/api/cases?after=garbage", headers=world.auth("north"))
    assert response.status_code == 422
    assert response.json() == {"detail": "after: not a cursor from this service: 'garbage'"}


# ------------------------------------------------------------------------------------ actions


def test_confirm_changes_status_and_writes_audit(world: World) -> None:
    tea = world.cases["tea"]
    response = world.client.post(f"/api/cases/{tea}/confirm", headers=world.auth("street"))
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed" and response.json()["action"] == "confirm"
    assert _audit(world.factory, tea) == [("street", "confirm", {"from": "new"})]
    again = world.client.post(f"/api/cases/{tea}/confirm", headers=world.auth("north"))
    assert again.status_code == 409
    assert again.json() == {"detail": f"case {tea} is confirmed; confirm needs a case that is new"}
    detail = world.client.get(f"/api/cases/{tea}", headers=world.auth("north")).json()
    assert [(a["actor"], a["action"]) for a in detail["audit"]] == [("street", "confirm")]


def test_dismiss_records_the_reason(world: World) -> None:
    noodle = world.cases["noodle"]
    response = world.client.post(
        f"/api/cases/{noodle}/dismiss", json={"reason": "  allowed_time_window "}, headers=world.auth("north")
    )
    assert response.status_code == 200
    with world.factory() as s:
        assert s.get(Case, noodle).status == "dismissed"  # type: ignore[union-attr]
    assert _audit(world.factory, noodle) == [("north", "dismiss", {"from": "new", "reason": "allowed_time_window"})]
    blank = world.client.post(f"/api/cases/{noodle}/dismiss", json={"reason": "   "}, headers=world.auth("north"))
    assert blank.status_code in (409, 422)


def test_dismiss_reasons_are_a_closed_list(world: World) -> None:
    tea = world.cases["tea"]
    typo = world.client.post(f"/api/cases/{tea}/dismiss", json={"reason": "False detections"},
                             headers=world.auth("north"))
    assert typo.status_code == 422
    assert typo.json()["detail"].startswith("reason: expected one of false_detection, not_a_violation, ")
    assert _audit(world.factory, tea) == []
    typed = world.client.post(f"/api/cases/{tea}/dismiss", json={"reason": "False detection"},
                              headers=world.auth("north"))
    assert typed.status_code == 200
    assert _audit(world.factory, tea) == [("north", "dismiss", {"from": "new", "reason": "false_detection"})]
    schema = world.client.get("/openapi.json").json()["components"]["schemas"]["DismissRequest"]
    assert schema["properties"]["reason"]["enum"][0] == "false_detection"


def test_merge_moves_alerts_and_audits_both_cases(world: World) -> None:
    tea = world.cases["tea"]
    with session_scope(world.factory) as s:
        dup = add_case(s, lat=31.23512, lon=121.47217, area_id="north-st1", alerts=2, priority=5).id
    response = world.client.post(f"/api/cases/{dup}/merge", json={"into_case_id": tea}, headers=world.auth("north"))
    assert response.status_code == 200
    with world.factory() as s:
        source, target = s.get(Case, dup), s.get(Case, tea)
        assert source is not None and target is not None
        assert (source.status, source.merged_into_id) == ("closed", tea)
        assert target.alert_count == 5
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.case_id == tea)) == 5
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.case_id == dup)) == 0
    [(actor, action, detail)] = _audit(world.factory, dup)
    assert (actor, action, detail["into_case_id"]) == ("north", "merge", tea)
    # what the merge moved and replaced, kept for its undo
    assert (sorted(detail["alert_ids"]), detail["target_priority"]) == ([f"al-{dup}-0", f"al-{dup}-1"], 33)
    assert _audit(world.factory, tea) == [("north", "merge_in", {"from_case_id": dup, "alerts": 2})]


@pytest.mark.parametrize(
    ("source", "into", "status_code", "detail"),
    [
        ("tea", "tea", 422, "into_case_id: a case cannot be merged into itself (case {tea})"),
        (
            "tea",
            "noodle",
            409,
            "case {tea} is illegal_parking but case {noodle} is street_vending; "
            "only cases of the same violation can be merged",
        ),
        ("tea", "fruit", 404, "case {fruit} not found"),
        ("tea", 999_999, 404, "case 999999 not found"),
    ],
)
def test_merge_refusals(world: World, source: str, into: str | int, status_code: int, detail: str) -> None:
    target = world.cases[into] if isinstance(into, str) else into
    response = world.client.post(
        f"/api/cases/{world.cases[source]}/merge", json={"into_case_id": target}, headers=world.auth("north")
    )
    assert response.status_code == status_code
    assert response.json() == {"detail": detail.format(**world.cases)}


def test_reassign_sets_manual_attribution(world: World) -> None:
    tea = world.cases["tea"]
    response = world.client.post(
        f"/api/cases/{tea}/reassign", json={"merchant_id": "m-noodle"}, headers=world.auth("north")
    )
    assert response.status_code == 200
    with world.factory() as s:
        case = s.get(Case, tea)
        assert case is not None
        assert (case.merchant_id, case.attribution_method) == ("m-noodle", "manual")
        # the point is 0.0002 deg (about 19 m) west of the noodle bar's zone
        assert case.attribution_distance_m is not None and 18 < case.attribution_distance_m < 20
    assert _audit(world.factory, tea) == [
        (
            "north",
            "reassign",
            {
                "from_merchant_id": "m-tea",
                "to_merchant_id": "m-noodle",
                "from_method": "inside_zone",
                "from_distance_m": 0.0,
            },
        )
    ]
    other_area = world.client.post(
        f"/api/cases/{tea}/reassign", json={"merchant_id": "m-fruit"}, headers=world.auth("north")
    )
    assert other_area.status_code == 404
    assert other_area.json() == {"detail": "merchant 'm-fruit' not found"}
    city = world.client.post(f"/api/cases/{tea}/reassign", json={"merchant_id": "m-fruit"}, headers=world.auth("city"))
    assert city.status_code == 200


# ------------------------------------------------------------------------------------ evidence


def test_evidence_only_for_users_of_the_right_area(world: World) -> None:
    tea = world.client.get(f"/api/cases/{world.cases['tea']}", headers=world.auth("north")).json()
    url = tea["evidence_url"]
    image = world.client.get(url, headers=world.auth("street"))
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert image.content == world.jpegs[0]
    outside = world.client.get(url, headers=world.auth("south"))
    assert outside.status_code == 404
    assert outside.json() == {"detail": "evidence not found"}
    outside_by_case = world.client.get(f"{url}?case_id={world.cases['tea']}", headers=world.auth("south"))
    assert outside_by_case.status_code == 404
    anonymous = world.client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "Not authenticated"}
    wrong_case = world.client.get(f"{url}?case_id={world.cases['fruit']}", headers=world.auth("city"))
    assert wrong_case.status_code == 404  # the fruit case does not use the tea photo


def test_evidence_files_are_not_reachable_as_static_files(world: World) -> None:
    sha = EvidenceStore(world.settings.evidence_dir).path_for("a" * 64).parent.name
    for path in (f"/static/{sha}", "/static/../evidence", "/evidence", "/evidence/../../etc/passwd"):
        assert world.client.get(path, headers=world.auth("admin")).status_code == 404


# ------------------------------------------------------------------------------------ pages


def test_queue_needs_a_login(world: World) -> None:
    response = world.client.get("/?violation=illegal_parking", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F%3Fviolation%3Dillegal_parking"


def test_login_without_csrf_is_403(world: World) -> None:
    world.client.get("/login")
    response = world.client.post("/login", data={"username": "north", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json() == {"detail": "CSRF token missing or invalid"}
    forged = world.client.post("/login", data={"username": "north", "password": PASSWORD, "csrf_token": "forged"})
    assert forged.status_code == 403


def test_session_cookie_flags(world: World) -> None:
    world.client.get("/login")
    token = csrf_field(world.client.get("/login").text)
    response = world.client.post(
        "/login",
        data={"username": "north", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # development mode on plain http


def test_login_rate_limit_is_429_even_for_the_right_password(world: World) -> None:
    token = csrf_field(world.client.get("/login").text)
    for _ in range(5):
        wrong = world.client.post("/login", data={"username": "north", "password": "nope", "csrf_token": token})
        assert wrong.status_code == 401
        assert "用户名或密码错误。" in wrong.text  # zh-CN, the default language
    blocked = world.client.post(
        "/login",
        data={"username": "north", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60  # until the oldest failure leaves the window
    assert f"该用户名登录失败次数过多，请在 {blocked.headers['retry-after']} 秒后再试。" in blocked.text
    # another user from the same address is not blocked
    other = world.client.post(
        "/login",
        data={"username": "south", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert other.status_code == 303


def test_the_login_rate_limit_holds_across_web_processes(world: World) -> None:
    """Two apps on one database stand for two web processes behind a load balancer: failures
    spread over both count once, so a second process does not give an attacker more guesses."""
    other_app = build_app(world.settings.model_copy(update={"web": DEV_SECURITY}), world.factory)
    with TestClient(other_app) as other:
        for index in range(5):
            client = world.client if index % 2 else other
            token = csrf_field(client.get("/login").text)
            wrong = client.post("/login", data={"username": "north", "password": "nope", "csrf_token": token})
            assert wrong.status_code == 401
        for client in (world.client, other):
            token = csrf_field(client.get("/login").text)
            blocked = client.post(
                "/login",
                data={"username": "North", "password": PASSWORD, "csrf_token": token},  # case does not help
                follow_redirects=False,
            )
            assert blocked.status_code == 429
    with session_scope(world.factory) as session:
        stored = session.scalars(select(LoginFailure.key)).all()
    # one row for the account and one for the address per failure: digests, not names
    assert len(stored) == 10 and all("north" not in key and "testclient" not in key for key in stored)


def test_login_failures_expire_with_the_window_and_a_login_clears_them(
    session_factory: sessionmaker[Session],
) -> None:
    now = [datetime(2026, 12, 2, 9, 0, tzinfo=UTC)]
    limiter = LoginRateLimiter(session_factory, max_failures=3, max_per_address=5, window_s=60, clock=lambda: now[0])
    for index in range(3):
        limiter.record_failure("north", f"10.0.0.{index}")  # three addresses, one account
    assert limiter.blocked("north", "10.0.0.9") == Block(by="account", retry_after_s=60)  # from any address
    assert limiter.blocked("south", "10.0.0.1") is None  # the addresses are not used up yet
    now[0] += timedelta(seconds=20)
    assert limiter.blocked("North ", "10.0.0.9") == Block(by="account", retry_after_s=40)  # case and spaces do not help
    for name in ("a", "b", "c", "d"):
        limiter.record_failure(name, "10.0.0.7")  # one address, many accounts
    assert limiter.blocked("south", "10.0.0.7") is None  # 4 of 5
    limiter.record_failure("e", "10.0.0.7")
    assert limiter.blocked("south", "10.0.0.7") == Block(by="address", retry_after_s=60)
    assert limiter.blocked("south", "10.0.0.8") is None
    now[0] += timedelta(seconds=61)
    assert limiter.blocked("north", "10.0.0.1") is None and limiter.blocked("south", "10.0.0.7") is None
    limiter.record_failure("south", "10.0.0.1")  # a new failure clears everyone's expired rows
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 2
    limiter.reset("south")  # a login forgets the account's failures, not the address's
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1


def test_unknown_user_is_the_same_401(world: World) -> None:
    token = csrf_field(world.client.get("/login").text)
    response = world.client.post("/login", data={"username": "ghost", "password": "x", "csrf_token": token})
    assert response.status_code == 401
    assert "用户名或密码错误。" in response.text


def test_queue_page_shows_the_users_cases(world: World) -> None:
    client = form_login(world.client, "north", PASSWORD)
    html = client.get("/").text
    shown = {int(i) for i in re.findall(r'data-case-id="(\d+)"', html)}
    assert shown == {world.cases[n] for n in ("tea", "noodle", "north-poly")}
    assert "Lotus Tea House" in html and "12 Tea Street" in html
    assert '<svg class="map"' in html and 'data-merchant="m-tea"' in html
    assert "/evidence/" in html and "Fresh Fruit Corner" not in html
    assert "共 3 件" in html  # zh-CN: the default language


def test_page_action_without_csrf_is_403_and_changes_nothing(world: World) -> None:
    client = form_login(world.client, "north", PASSWORD)
    tea = world.cases["tea"]
    response = client.post(f"/cases/{tea}/confirm", data={"next": "/"})
    assert response.status_code == 403
    assert response.json() == {"detail": "CSRF token missing or invalid"}
    assert _audit(world.factory, tea) == []


def test_page_actions_with_csrf_write_audit(world: World) -> None:
    client = form_login(world.client, "north", PASSWORD)
    token = csrf_field(client.get("/").text)
    tea, noodle = world.cases["tea"], world.cases["noodle"]
    confirm = client.post(
        f"/cases/{tea}/confirm", data={"csrf_token": token, "next": "/?status=new"}, follow_redirects=False
    )
    assert confirm.status_code == 303
    assert confirm.headers["location"] == "/?status=new"  # the message is in the session, not the URL
    assert re.search(r"data-testid=\"flash\">已确认 #\d+", client.get("/?status=new").text)
    assert 'data-testid="flash"' not in client.get("/?status=new").text  # shown once
    dismiss = client.post(
        f"/cases/{noodle}/dismiss",
        data={"reason": "false_detection", "next": "/"},
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )
    assert dismiss.status_code == 200
    assert dismiss.json()["status"] == "dismissed"
    assert _audit(world.factory, tea) == [("north", "confirm", {"from": "new"})]
    assert _audit(world.factory, noodle)[0][:2] == ("north", "dismiss")
    page = client.get(f"/cases/{tea}").text
    assert re.search(r'<td><span translate="no">north</span></td><td>确认</td>', page)


def test_a_refused_plain_form_comes_back_to_the_queue_with_the_reason(world: World) -> None:
    client = form_login(world.client, "north", PASSWORD)
    token = csrf_field(client.get("/").text)
    tea = world.cases["tea"]
    form = {"csrf_token": token, "next": "/?status=new"}
    assert client.post(f"/cases/{tea}/confirm", data=form, follow_redirects=False).status_code == 303
    again = client.post(f"/cases/{tea}/confirm", data=form, follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/?status=new"
    page = client.get(again.headers["location"]).text
    flash = re.search(r'<p class="flash( error)?" data-testid="flash">([^<]*)</p>', page)
    assert flash is not None
    assert flash.groups() == (" error", f"案件 #{tea} 已是“已确认”，不能再作此决定。")
    assert _audit(world.factory, tea) == [("north", "confirm", {"from": "new"})]


def test_page_redirect_target_stays_on_site(world: World) -> None:
    client = form_login(world.client, "north", PASSWORD)
    token = csrf_field(client.get("/").text)
    response = client.post(
        f"/cases/{world.cases['tea']}/confirm",
        data={"csrf_token": token, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_logout_ends_the_session(world: World) -> None:
    client = form_login(world.client, "north", PASSWORD)
    token = csrf_field(client.get("/").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_case_page_outside_the_area_is_404(world: World) -> None:
    client = form_login(world.client, "south", PASSWORD)
    assert client.get(f"/cases/{world.cases['tea']}").status_code == 404


# ------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("secret", [None, "changethis", "short-secret"])
def test_production_refuses_a_missing_or_placeholder_secret(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, secret: str | None
) -> None:
    security = WebSettings(mode="production", secret_key=secret)  # type: ignore[arg-type]
    with pytest.raises(InsecureSettings, match="STREETWATCH_SECRET_KEY"):
        build_app(central_settings.model_copy(update={"web": security}), session_factory)


def test_production_cookies_are_secure(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    security = load_settings(None, environ={"STREETWATCH_SECRET_KEY": "k" * 48}).web
    assert security.mode == "production" and security.secure_cookies
    app = build_app(central_settings.model_copy(update={"web": security}), session_factory)
    with TestClient(app, base_url="https://testserver") as client:
        cookie = client.get("/login").headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_demo_mode_runs_without_a_secret(
    session_factory: sessionmaker[Session], central_settings: CentralSettings
) -> None:
    security = load_settings(None, environ={"STREETWATCH_MODE": "demo"}).web
    assert security.secure_cookies is False
    assert len(security.resolved_secret()) >= 32


def test_openapi_lists_the_api_and_docs_need_no_cdn(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    for path in (
        "/api/cases",
        "/api/cases/{case_id}",
        "/api/cases/{case_id}/confirm",
        "/api/cases/{case_id}/dismiss",
        "/api/cases/{case_id}/merge",
        "/api/cases/{case_id}/reassign",
        "/api/merchants",
    ):
        assert path in spec["paths"], path
    alert = spec["components"]["schemas"]["AlertPublic"]["properties"]
    assert {"objects", "evidence"} <= alert.keys()
    assert spec["components"]["schemas"]["DetectedObjectPublic"]["required"] == ["cls", "score", "bbox"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API token: `Authorization: Bearer sw_...`",
    }
    docs = world.client.get("/docs")
    assert docs.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
    assert world.client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def _json_schemas(spec: dict[str, object]) -> dict[str, dict[str, object]]:
    """`METHOD path` -> the JSON schema of its success response, for every operation answering JSON."""
    found = {}
    for path, operations in spec["paths"].items():  # type: ignore[attr-defined]
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                content = response.get("content", {})
                if code.startswith("2") and "application/json" in content:
                    found[f"{method.upper()} {path}"] = content["application/json"]["schema"]
    return found


def test_every_json_endpoint_has_a_named_response_model(world: World) -> None:
    """No endpoint answers an untyped dict: each success response is a model (or a list of one) in
    /openapi.json, so clients can generate types from it."""
    schemas = _json_schemas(world.client.get("/openapi.json").json())
    untyped = {op: s for op, s in schemas.items() if "$ref" not in s and "$ref" not in s.get("items", {})}  # type: ignore[operator, union-attr]
    assert untyped == {}
    for op in ("GET /api/workflow/hotspots", "GET /api/stats", "POST /api/workflow/merchants/{merchant_id}/complaints"):
        assert op in schemas  # the endpoints that returned dicts before are among them
    step = world.client.get("/openapi.json").json()["components"]["schemas"]["StepPublic"]
    assert {"case_id", "status", "strike_step", "rectify_by", "history"} <= step["properties"].keys()


def test_pages_carry_a_strict_content_security_policy(world: World) -> None:
    headers = world.client.get("/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_two_reviewers_confirming_at_once_one_wins(world: World) -> None:
    """The case row is locked per action: the second reviewer gets a conflict, one audit row."""
    from concurrent.futures import ThreadPoolExecutor

    from streetwatch.central.case_service import Reviewer
    from streetwatch.central.errors import Conflict
    from streetwatch.central.models import User
    from streetwatch.central.review import ReviewService

    service = ReviewService(world.factory)
    with world.factory() as s:
        reviewers = [Reviewer.of(s, s.scalars(select(User).where(User.username == u)).one()) for u in ("north", "city")]
    tea = world.cases["tea"]

    def attempt(reviewer: Reviewer) -> str:
        try:
            return service.confirm(tea, reviewer=reviewer).status
        except Conflict as exc:
            return exc.detail

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = sorted(pool.map(attempt, reviewers))
    assert results == sorted(["confirmed", f"case {tea} is confirmed; confirm needs a case that is new"])
    assert len(_audit(world.factory, tea)) == 1


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/?status=new", "/?status=new"),
        ("/cases/3", "/cases/3"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("cases/3", "/"),
    ],
)
def test_safe_next_keeps_redirects_on_site(target: str, expected: str) -> None:
    from streetwatch.central.web.render import safe_next

    assert safe_next(target) == expected


def test_login_upgrades_a_weak_password_hash(world: World) -> None:
    """A hash made with weaker Argon2 parameters is replaced at the next successful login."""
    from argon2 import PasswordHasher

    from streetwatch.central.models import User
    from streetwatch.central.passwords import needs_rehash

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with session_scope(world.factory) as s:
        s.scalars(select(User).where(User.username == "south")).one().password_hash = weak
    form_login(world.client, "south", PASSWORD)
    with world.factory() as s:
        stored = s.scalars(select(User).where(User.username == "south")).one().password_hash
    assert stored != weak and not needs_rehash(stored)
    assert world.client.get("/").status_code == 200  # the session made at login is still valid
