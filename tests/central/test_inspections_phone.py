"""The inspector's visits from the phone, through the pages as a browser posts them (TestClient, real
database): one visit per merchant and day, assigned, then done with a result, a note and a real
JPEG photo; the photo is bounded, checked to be a JPEG, stored by its sha256 like evidence and
served only to users whose area covers the visit."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from review_seed import PASSWORD, T0, add_case, seed_city, street_jpeg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web_forms import csrf_field, form_login

from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, ReviewSettings, WebSettings
from streetwatch.central.db import session_scope
from streetwatch.central.models import AuditLog, Case, Inspection
from streetwatch.central.web.photos import PhotoRejected, jpeg_size
from streetwatch.central.workflow.clock import ManualClock

NOW = T0 + timedelta(hours=2)


@dataclass
class Visits:
    factory: sessionmaker[Session]
    settings: CentralSettings
    app: object
    cases: list[int]


@pytest.fixture()
def visits(session_factory: sessionmaker[Session], central_settings: CentralSettings) -> Iterator[Visits]:
    seed_city(session_factory)
    with session_scope(session_factory) as s:
        cases = []
        for hours in (0, 1):  # two unrectified cases of the tea house on one day: one visit
            case = add_case(
                s,
                lat=31.2351,
                lon=121.4721,
                area_id="north",
                merchant_id="m-tea",
                status="escalated",
                first_seen=T0 + timedelta(hours=hours),
            )
            s.add(
                Inspection(
                    case_id=case.id,
                    merchant_id="m-tea",
                    reason="case",
                    due_at=T0 + timedelta(hours=hours),
                    created_at=T0,
                )
            )
            cases.append(case.id)
    settings = central_settings.model_copy(
        update={
            "web": WebSettings(mode="development", secret_key="p" * 40, cookie_secure=False),  # type: ignore[arg-type]
            "review": ReviewSettings(max_photo_bytes=256 * 1024),
        }
    )
    app = build_app(settings, session_factory, clock=ManualClock(NOW))
    yield Visits(session_factory, settings, app, cases)


def _flash(client: TestClient, response: Response) -> tuple[str, bool]:
    """The message the page a form redirected to shows (once), and whether it is a refusal."""
    assert "flash=" not in response.headers["location"]  # the server keeps the words, not the URL
    page = client.get(response.headers["location"]).text
    found = re.search(r'<p class="flash( error)?" data-testid="flash">([^<]*)</p>', page)
    assert found, "no message on the page"
    return html.unescape(found.group(2)), found.group(1) is not None


def test_one_visit_assigned_then_done_from_the_phone_with_a_photo(visits: Visits, street_dir: Path) -> None:
    photo = street_jpeg(street_dir)
    with TestClient(visits.app) as client:
        form_login(client, "north", PASSWORD)
        page = client.get("/inspections").text
        assert page.count('data-testid="visit"') == 2  # the tea house once (both cases), the noodle bar's routine visit
        assert page.count('data-merchant-id="m-tea"') == 1
        token = csrf_field(page)
        assigned = client.post(
            "/inspections/visits/m-tea/assign", data={"assignee": "inspector-li", "csrf_token": token}
        )
        assert assigned.status_code == 200 and "巡查已分派给 inspector-li" in assigned.text
        done = client.post(
            "/inspections/visits/m-tea/done",
            data={"result": "passed", "note": "门前已清理", "csrf_token": token},
            files={"photo": ("IMG_0001.jpg", photo, "image/jpeg")},
            follow_redirects=False,
        )
        assert done.status_code == 303 and "核查了 2 件" in _flash(client, done)[0]
        sha = hashlib.sha256(photo).hexdigest()
        assert client.get(f"/evidence/{sha}").content == photo
        workflow = client.get(f"/cases/{visits.cases[0]}/workflow").text
        assert f"/evidence/{sha}" in workflow and "巡查照片" in workflow
        form_login(client, "south", PASSWORD)
        assert client.get(f"/evidence/{sha}").status_code == 404  # another district
    with visits.factory() as s:
        rows = list(s.scalars(select(Inspection).where(Inspection.merchant_id == "m-tea")))
        assert {(r.status, r.result, r.assignee, r.note, r.photo_sha256) for r in rows} == {
            ("done", "passed", "inspector-li", "门前已清理", sha)
        }
        verified = list(s.scalars(select(AuditLog.case_id).where(AuditLog.action == "verified")))
        assert sorted(verified) == visits.cases
        assert all(s.get(Case, c).status == "escalated" for c in visits.cases)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("shot.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "照片须为 JPEG 图片。"),
        ("fake.jpg", b"\xff\xd8\xff\xe0" + b"\xff" * 64, "照片须为 JPEG 图片。"),
        ("huge.jpg", b"\xff\xd8" + b"\0" * (256 * 1024 + 10), "照片超过 0.25 MB。"),
    ],
    ids=["png", "not-a-jpeg", "too-large"],
)
def test_a_photo_that_is_not_a_bounded_jpeg_is_refused_and_nothing_is_stored(
    visits: Visits, name: str, data: bytes, message: str
) -> None:
    with TestClient(visits.app) as client:
        form_login(client, "north", PASSWORD)
        token = csrf_field(client.get("/inspections").text)
        refused = client.post(
            "/inspections/visits/m-tea/done",
            data={"result": "failed", "csrf_token": token},
            files={"photo": (name, data, "image/jpeg")},
            follow_redirects=False,
        )
        assert refused.status_code == 303
        assert _flash(client, refused) == (message, True)
    with visits.factory() as s:
        assert set(s.scalars(select(Inspection.status))) == {"open"}
    assert not any(visits.settings.evidence_dir.rglob("*.jpg"))


def test_jpeg_size_reads_the_frame_header(street_dir: Path) -> None:
    assert jpeg_size(street_jpeg(street_dir, width=480))[0] == 480
    with pytest.raises(PhotoRejected):
        jpeg_size(b"GIF89a")
