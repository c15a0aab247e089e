"""A real Open311 client against a real `central serve` (a subprocess with its broker, database and
evidence folder): the `georeport` package from PyPI reads services, a service definition, requests
and one request in JSON and in XML. It has no call for discovery, POST or tokens, so those go
through `requests` (the HTTP library georeport itself uses), as a 311 app would send them. Every
JSON answer is validated against the spec's schemas (open311_schemas.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import xmltodict
from georeport import GeoReport
from open311_schemas import (
    DISCOVERY,
    POST_RESPONSE,
    REQUEST_FIELDS,
    REQUESTS,
    SERVICE_DEFINITION,
    SERVICES,
    TOKEN_RESPONSE,
    check,
)
from sqlalchemy.orm import Session, sessionmaker
from support import free_port
from test_open311 import WINDOW, make_city

from streetwatch.central.config import CentralSettings, Open311Settings
from streetwatch.central.models import Case
from streetwatch.central.open311_keys import issue_key

JURISDICTION = "shanghai.example"


def _wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"central serve exited: {proc.communicate()[0]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError("central serve did not answer within 60 s")


@pytest.fixture()
def served(
    mqtt_broker: object, db_url: str, session_factory: sessionmaker[Session], central_settings: CentralSettings,
    street_dir: Path, tmp_path: Path,
) -> Iterator[tuple[str, str, dict[str, int]]]:
    """(base URL, an Open311 client key, the seeded cases) of a running `central serve`."""
    _, cases = make_city(session_factory, central_settings, street_dir, Open311Settings())
    key = issue_key(session_factory, name="georeport test").secret
    group, port = f"o{uuid.uuid4().hex[:8]}", free_port()
    config = tmp_path / "central.yaml"
    config.write_text(
        f"broker: {{url: '{mqtt_broker.url}', protocol: '{mqtt_broker.protocol}', "  # type: ignore[attr-defined]
        f"client_id: {group}, subscription: '$share/{group}/streetwatch/v1/alerts/box-{group}/+'}}\n"
        f"web: {{port: {port}, mode: development}}\n"
        # the public URL names the host as `localhost`: links must follow it, not the Host header
        f"open311: {{public: true, base_url: 'http://localhost:{port}/', jurisdiction_id: {JURISDICTION}}}\n"
        f"evidence_dir: {central_settings.evidence_dir}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_") or "ASSETS" in k or "MODEL" in k}
    exe = shutil.which("central") or str(Path(sys.executable).parent / "central")
    proc = subprocess.Popen([exe, "serve", "--config", str(config), "--database-url", db_url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{base}/open311/discovery.json", proc)
        yield base, key, cases
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output


def test_georeport_reads_and_a_citizen_posts_a_photo(
    served: tuple[str, str, dict[str, int]], street_dir: Path, session_factory: sessionmaker[Session]
) -> None:
    base, key, cases = served
    root = f"{base}/open311/v2"
    discovery = requests.get(f"{base}/open311/discovery.json", timeout=10).json()
    check(DISCOVERY, discovery)
    assert discovery["endpoints"][0]["url"] == f"{base.replace('127.0.0.1', 'localhost')}/open311/v2"
    assert xmltodict.parse(requests.get(f"{base}/open311/discovery.xml", timeout=10).content)["discovery"]["endpoints"]

    as_json = GeoReport(root, jurisdiction=JURISDICTION)
    as_xml = GeoReport(root, jurisdiction=JURISDICTION, output_format="xml")
    services = as_json.get_service_list()
    check(SERVICES, services)
    assert {s["service_code"] for s in services} == {"illegal_parking", "street_vending", "stacked_goods"}
    assert {s["service_code"] for s in as_xml.get_service_list()} == {s["service_code"] for s in services}
    definition = as_json.get_service_definition("illegal_parking")
    check(SERVICE_DEFINITION, definition)
    assert as_xml.get_service_definition("illegal_parking")["attributes"]["attribute"][0]["code"] == "shop_name"

    listed = as_json.get_service_requests(**{name: WINDOW[name] for name in ("start_date", "end_date")},
                                          status="open,closed")
    check(REQUESTS, listed)
    published = {str(cases["tea"]), str(cases["fruit"])}
    assert {r["service_request_id"] for r in listed} == published  # not the dismissed one, not the new one
    xml_listed = as_xml.get_service_requests(start_date=WINDOW["start_date"], end_date=WINDOW["end_date"])
    assert {r["service_request_id"] for r in xml_listed} == published
    assert all(set(r) == REQUEST_FIELDS for r in xml_listed)
    tea = as_json.get_service_request(str(cases["tea"]))
    assert tea["status"] == "open" and tea["address"] is None  # no merchant address in public
    assert as_xml.get_service_request(str(cases["tea"]))["service_code"] == "illegal_parking"
    for client in (as_json, as_xml):
        with pytest.raises(requests.HTTPError) as refused:
            client.get_service_request(str(cases["noodle"]))  # dismissed as a false detection: never published
        assert refused.value.response.status_code == 404

    media_url = str(tea["media_url"])
    assert media_url.startswith(f"http://localhost:{base.rsplit(':', 1)[1]}/open311/v2/media/")
    photo = requests.get(media_url, timeout=10)  # anonymous, from the configured base URL
    assert photo.status_code == 200 and photo.content.startswith(b"\xff\xd8")

    # a citizen's app POSTs a report with a real photo
    with (street_dir / "kerb_pickup_truck_scooter.jpg").open("rb") as handle:
        posted = requests.post(
            f"{root}/requests.json", timeout=30,
            data={"api_key": key, "jurisdiction_id": JURISDICTION, "service_code": "illegal_parking",
                  "lat": "31.22512", "long": "121.47512", "description": "皮卡停在人行道上", "email": "cit@example.cn",
                  "attribute[duration]": "30min"},
            files={"media": ("pickup.jpg", handle, "image/jpeg")},
        )
    assert posted.status_code == 200, posted.text
    check(POST_RESPONSE, posted.json())
    token = posted.json()[0]["token"]
    followed = requests.get(f"{root}/tokens/{token}.json", params={"jurisdiction_id": JURISDICTION}, timeout=10)
    check(TOKEN_RESPONSE, followed.json())
    request_id = followed.json()[0]["service_request_id"]
    assert request_id == posted.json()[0]["service_request_id"]
    mine = as_json.get_service_request(request_id)
    check(REQUESTS, [mine])
    assert mine["status"] == "open" and "awaiting review" in mine["status_notes"]
    with session_factory() as session:
        case = session.get(Case, int(request_id))
        assert case is not None and (case.source, case.status, case.merchant_id) == ("citizen", "new", "m-fruit")
        assert case.evidence_sha256 is not None
    without_key = requests.post(f"{root}/requests.xml", data={"service_code": "illegal_parking"}, timeout=10)
    assert without_key.status_code == 403
    assert xmltodict.parse(without_key.content)["errors"]["error"]["code"] == "403"
