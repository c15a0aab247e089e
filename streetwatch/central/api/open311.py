"""Open311 GeoReport v2 (wiki.open311.org/GeoReport_v2): discovery, services and their
definitions, requests (GET and POST), tokens, one request; each as `.xml` (the spec's default) or
`.json`. Citizen reports POSTed here become cases (citizen.py); what is published, and to whom, is
open311_records.py; the documents are open311_format.py.

Access (settings `open311`):
- POST needs an Open311 client key (`api_key`: `central open311-key create NAME`), revocable;
- reads are public where `open311.public` is on; otherwise they need a client key or a user's API
  token (`api_key` or `Authorization: Bearer`); a user's token reads that user's area as staff;
- every refusal is the spec's error list: 400 (a bad parameter, named), 403 (api_key), 404
  (unknown service, request, token, jurisdiction or format), 413 (a body over the limit), 429
  (the client's hourly allowance). Parameters are read by hand, bounded, so nothing answers 422/500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from streetwatch.central.access import load_scope
from streetwatch.central.api.deps import SessionDep, SettingsDep, _bearer
from streetwatch.central.api.evidence import evidence_file
from streetwatch.central.api.open311_docs import (
    Open311Created,
    Open311Discovery,
    Open311Request,
    Open311Service,
    Open311ServiceDefinition,
    Open311Token,
    documented,
)
from streetwatch.central.api.open311_docs import Open311Error as Open311ErrorDoc
from streetwatch.central.api.tokens import user_for_token
from streetwatch.central.case_store import resolve_merged
from streetwatch.central.citizen import (
    SERVICE_ATTRIBUTES,
    ReportRejected,
    TooManyReports,
    parse_report,
    submit_report,
)
from streetwatch.central.citizen_photos import PhotoError, photo_as_jpeg
from streetwatch.central.config import CentralSettings
from streetwatch.central.models import Case, CitizenReport
from streetwatch.central.open311_format import Format, Open311Error, Record, render, split_format
from streetwatch.central.open311_keys import client_for_key
from streetwatch.central.open311_records import (
    MAX_REQUESTS,
    Links,
    Reader,
    RequestQuery,
    find_requests,
    published,
)
from streetwatch.central.workflow.ids import MAX_ID

log = logging.getLogger(__name__)

router = APIRouter(prefix="/open311", tags=["open311"])

SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-12-03T00:00:00Z"  # when this endpoint's behaviour last changed (discovery)
DEFAULT_DAYS = 90  # the spec's default window, and its longest
MAX_PARAM_CHARS = 2000
FORM_OVERHEAD_BYTES = 64 * 1024  # the text fields of a POST beside its photo
MAX_FORM_FIELDS = 40
_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _answer(fmt: Format, root: str, item: str | None, content: list[Record] | Record) -> Response:
    body, media_type = render(fmt, root, item, content)
    return Response(body, media_type=media_type)


def _param(params: Mapping[str, str], name: str, fmt: Format) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if len(value) > MAX_PARAM_CHARS:
        raise Open311Error(400, f"{name}: at most {MAX_PARAM_CHARS} characters", fmt=fmt)
    if "\x00" in value:
        raise Open311Error(400, f"{name}: contains a NUL character", fmt=fmt)
    return value


def _check_jurisdiction(params: Mapping[str, str], settings: CentralSettings, fmt: Format) -> None:
    given = _param(params, "jurisdiction_id", fmt)
    served = settings.open311.jurisdiction_id
    if given and served and given != served:
        raise Open311Error(404, f"jurisdiction_id: {given[:60]!r} is not served here (this is {served!r})", fmt=fmt)


def _reader(request: Request, session: Session, settings: CentralSettings, fmt: Format) -> Reader:
    """Who reads (see the module docstring); 403 in the spec's format otherwise."""
    _check_jurisdiction(request.query_params, settings, fmt)
    key = _bearer(request) or _param(request.query_params, "api_key", fmt)
    if key:
        client = client_for_key(session, key)
        if client is not None:
            return Reader(scope=None, public=True, client_id=client.id)
        user = user_for_token(session, key) if len(key) <= 200 else None
        if user is not None:
            return Reader(scope=load_scope(session, user), public=False)
        raise Open311Error(403, "api_key: unknown or revoked key", fmt=fmt)
    if settings.open311.public:
        return Reader(scope=None, public=True)
    raise Open311Error(403, "api_key: required (this city does not publish its requests to anonymous readers)",
                       fmt=fmt)


def _links(settings: CentralSettings) -> Links:
    return Links(settings.open311.public_base(settings.web))


def _format(name: str, *, expect: str) -> Format:
    stem, fmt = split_format(name)
    if stem != expect:
        raise Open311Error(404, f"no such resource: {stem[:60]!r}", fmt=fmt)
    return fmt


# ---------------------------------------------------------------- discovery and services


def _discovery(request: Request, settings: CentralSettings, fmt: Format) -> Response:
    _check_jurisdiction(request.query_params, settings, fmt)
    base = _links(settings).base
    document: Record = {
        "changeset": CHANGESET,
        "contact": settings.open311.contact or "the city's street-order office",
        "key_service": "api_key for POST: ask the city (central open311-key create)",
        "endpoints": [{
            "specification": SPEC_URL, "url": f"{base}open311/v2", "changeset": CHANGESET, "type": "production",
            "formats": ["text/xml", "application/json"],
        }],
    }
    return _answer(fmt, "discovery", None, document)


@router.get("/discovery.{fmt}", response_class=Response, responses=documented(Open311Discovery, 404),
            summary="Discovery: where the GeoReport v2 endpoint is and what it speaks")
def discovery(fmt: str, request: Request, settings: SettingsDep) -> Response:
    return _discovery(request, settings, _format(f"discovery.{fmt}", expect="discovery"))


@router.get("/v2/discovery.{fmt}", response_class=Response, responses=documented(Open311Discovery, 404),
            summary="Discovery (also under v2/)")
def discovery_v2(fmt: str, request: Request, settings: SettingsDep) -> Response:
    return _discovery(request, settings, _format(f"discovery.{fmt}", expect="discovery"))


def _service_records(settings: CentralSettings) -> list[Record]:
    return [
        {"service_code": code, "service_name": event.name,
         "description": f"{event.category} / {event.name} (event class {event.code})",
         "metadata": True, "type": "realtime", "keywords": code.replace("_", ","), "group": event.category}
        for code, event in sorted(settings.workflow.event_classes.items())
    ]


@router.get("/v2/services.{fmt}", response_class=Response, responses=documented(list[Open311Service], 404),
            summary="Service list: one per violation")
def services(fmt: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = _format(f"services.{fmt}", expect="services")
    _reader(request, session, settings, form)
    return _answer(form, "services", "service", _service_records(settings))


@router.get("/v2/services/{name}", response_class=Response,
            responses=documented(Open311ServiceDefinition, 404),
            summary="Service definition: the questions a report may answer")
def service_definition(name: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    code, fmt = split_format(name)
    _reader(request, session, settings, fmt)
    if code not in settings.workflow.event_classes:
        raise Open311Error(404, f"service_code: no service {code[:60]!r}", fmt=fmt)
    attributes: list[Record] = [
        {"variable": True, "code": a.code, "datatype": a.datatype, "required": a.required,
         "datatype_description": None, "order": a.order, "description": a.description,
         "values": [{"key": key, "name": label} for key, label in a.values]}
        for a in SERVICE_ATTRIBUTES
    ]
    return _answer(fmt, "service_definition", None, {"service_code": code, "attributes": attributes})


# ---------------------------------------------------------------- reading requests


def _time(value: str | None, name: str, fmt: Format) -> datetime | None:
    if not value:
        return None
    if len(value) > 40:
        raise Open311Error(400, f"{name}: expected a W3C date-time such as 2026-01-01T00:00:00Z", fmt=fmt)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Open311Error(400, f"{name}: expected a W3C date-time such as 2026-01-01T00:00:00Z, "
                                f"got {value!r}", fmt=fmt) from None


def _ids(value: str | None, fmt: Format) -> tuple[int, ...] | None:
    if not value:
        return None
    ids = []
    for part in value.split(","):
        part = part.strip()
        if not part.isascii() or not part.isdigit() or len(part) > 18:
            raise Open311Error(400, f"service_request_id: expected ids separated by commas, got {part[:30]!r}",
                               fmt=fmt)
        number = int(part)
        if 1 <= number <= MAX_ID:  # others cannot exist (and would overflow the column)
            ids.append(number)
    if len(ids) > MAX_REQUESTS:
        raise Open311Error(400, f"service_request_id: at most {MAX_REQUESTS} ids", fmt=fmt)
    return tuple(ids)


def _statuses(value: str | None, fmt: Format) -> frozenset[str]:
    if not value:
        return frozenset()
    given = frozenset(v.strip() for v in value.split(",") if v.strip())
    if not given <= {"open", "closed"}:
        raise Open311Error(400, f"status: expected open, closed or open,closed, got {value[:40]!r}", fmt=fmt)
    return given


def request_query(params: Mapping[str, str], fmt: Format, *, now: datetime) -> RequestQuery:
    """The query of GET requests, validated (the spec's defaults: the last 90 days)."""
    ids = _ids(_param(params, "service_request_id", fmt), fmt)
    codes_text = _param(params, "service_code", fmt)
    codes = tuple(c.strip() for c in codes_text.split(",") if c.strip()) if codes_text else None
    end = _time(_param(params, "end_date", fmt), "end_date", fmt)
    start = _time(_param(params, "start_date", fmt), "start_date", fmt)
    if end is None:
        end = start + timedelta(days=DEFAULT_DAYS) if start is not None else now
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS)
    if start > end:
        raise Open311Error(400, "start_date: after end_date", fmt=fmt)
    if end - start > timedelta(days=DEFAULT_DAYS) and ids is None:
        raise Open311Error(400, f"start_date, end_date: may span at most {DEFAULT_DAYS} days", fmt=fmt)
    return RequestQuery(ids=ids, codes=codes, start=start, end=end,
                        statuses=_statuses(_param(params, "status", fmt), fmt))


@router.get("/v2/requests.{fmt}", response_class=Response, responses=documented(list[Open311Request], 400, 404),
            summary="Service requests: by ids, or by service, window and status")
def get_requests(fmt: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    form = _format(f"requests.{fmt}", expect="requests")
    reader = _reader(request, session, settings, form)
    query = request_query(request.query_params, form, now=datetime.now(UTC))
    records = find_requests(session, reader, query, links=_links(settings), workflow=settings.workflow)
    return _answer(form, "service_requests", "request", records)


@router.get("/v2/requests/{name}", response_class=Response, responses=documented(list[Open311Request], 404),
            summary="One service request (a one-element list, as the spec says)")
def get_request(name: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    stem, fmt = split_format(name)
    reader = _reader(request, session, settings, fmt)
    ids = _ids(stem, fmt) if stem.isascii() and stem.isdigit() and len(stem) <= 18 else None  # else: no such id
    records = find_requests(session, reader, RequestQuery(ids, None, datetime.min.replace(tzinfo=UTC),
                                                          datetime.max.replace(tzinfo=UTC), frozenset()),
                            links=_links(settings), workflow=settings.workflow) if ids else []
    if not records:
        raise Open311Error(404, f"service_request_id: no request {stem[:30]!r}", fmt=fmt)
    return _answer(fmt, "service_requests", "request", records)


@router.get("/v2/tokens/{name}", response_class=Response, responses=documented(list[Open311Token], 404),
            summary="The request id a POST's token became")
def get_token(name: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    token, fmt = split_format(name)
    _reader(request, session, settings, fmt)
    report = None
    if len(token) == 32 and all(ch in "0123456789abcdef" for ch in token):
        report = session.query(CitizenReport).filter(CitizenReport.token == token).one_or_none()
    if report is None:
        raise Open311Error(404, f"token: no request with token {token[:40]!r}", fmt=fmt)
    case = resolve_merged(session, report.case_id)
    return _answer(fmt, "service_requests", "request", [{"service_request_id": str(case.id), "token": token}])


@router.get("/v2/media/{name}", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": list[Open311ErrorDoc]}},
            summary="A published request's photo (for media_url)")
def get_media(name: str, request: Request, session: SessionDep, settings: SettingsDep) -> FileResponse:
    fmt: Format = "xml"
    stem = name[:-4] if name.endswith(".jpg") else ""  # only .jpg: a photo has no other format
    _reader(request, session, settings, fmt)
    number = int(stem) if stem.isascii() and stem.isdigit() and len(stem) <= 18 else 0
    case = session.get(Case, number) if 1 <= number <= MAX_ID else None
    path = evidence_file(Path(settings.evidence_dir), case.evidence_sha256) if case and case.evidence_sha256 else None
    if case is None or not published(case) or path is None:
        raise Open311Error(404, f"media: no published photo {stem[:30]!r}", fmt=fmt)
    return FileResponse(path, media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


# ---------------------------------------------------------------- citizen reports: POST requests


async def _bounded_body(request: Request, *, limit: int, fmt: Format) -> None:
    """Read the body up to `limit` bytes (413 beyond), so the form parser works on bounded memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Open311Error(413, f"media: the request has {declared} bytes, at most {limit} are accepted", fmt=fmt)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Open311Error(413, f"media: the request is over {limit} bytes", fmt=fmt)
        chunks.append(chunk)
    request._body = b"".join(chunks)  # Request.stream() and form() read this from now on


async def _form(request: Request, settings: CentralSettings, fmt: Format) -> tuple[dict[str, str], UploadFile | None]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _MEDIA_TYPES:
        raise Open311Error(400, f"content-type: expected {' or '.join(_MEDIA_TYPES)}, got {media_type[:60]!r}",
                           fmt=fmt)
    await _bounded_body(request, limit=settings.open311.max_media_bytes + FORM_OVERHEAD_BYTES, fmt=fmt)
    try:
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=FORM_OVERHEAD_BYTES)
    except MultiPartException as exc:
        raise Open311Error(400, f"body: {exc.message}", fmt=fmt) from None
    fields: dict[str, str] = dict(request.query_params)
    media: UploadFile | None = None
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields[key] = value
        elif key == "media" and media is None:
            media = value
        else:
            raise Open311Error(400, f"{key[:40]}: a file is accepted only as media", fmt=fmt)
    for key, value in fields.items():
        if "\x00" in key or "\x00" in value:
            raise Open311Error(400, f"{key[:40]}: contains a NUL character", fmt=fmt)
    return fields, media


async def _photo(media: UploadFile | None, settings: CentralSettings, fmt: Format) -> bytes | None:
    if media is None or not media.filename:
        return None
    data = await media.read(settings.open311.max_media_bytes + 1)
    try:
        return await run_in_threadpool(photo_as_jpeg, data, max_bytes=settings.open311.max_media_bytes,
                                       max_pixels=settings.open311.max_media_pixels)
    except PhotoError as exc:
        raise Open311Error(400, str(exc), fmt=fmt) from None


@router.post("/v2/requests.{fmt}", response_class=Response,
             responses=documented(list[Open311Created], 400, 404, 413, 429),
             summary="Create a service request: a citizen's report (form or multipart)")
async def post_request(fmt: str, request: Request, settings: SettingsDep) -> Response:
    form = _format(f"requests.{fmt}", expect="requests")
    return await _post(request, settings, form)


async def _post(request: Request, settings: CentralSettings, fmt: Format) -> Response:
    fields, media = await _form(request, settings, fmt)
    _check_jurisdiction(fields, settings, fmt)
    client_id = await run_in_threadpool(_client_id, request, fields, fmt)
    photo = await _photo(media, settings, fmt)
    try:
        report = parse_report(fields)
        submitted = await run_in_threadpool(
            submit_report, request.app.state.session_factory, settings, report,
            client_id=client_id, photo_jpeg=photo, now=datetime.now(UTC),
        )
    except TooManyReports as exc:
        raise Open311Error(429, str(exc), fmt=fmt) from None
    except ReportRejected as exc:
        raise Open311Error(400, str(exc), fmt=fmt) from None
    notice = "已与附近的同类案件合并 (joined the open case at this spot)" if submitted.joined_existing else None
    record: Record = {"service_request_id": str(submitted.case_id), "token": submitted.token,
                      "service_notice": notice, "account_id": None}
    return _answer(fmt, "service_requests", "request", [record])


def _client_id(request: Request, fields: Mapping[str, str], fmt: Format) -> int:
    key = fields.get("api_key") or _bearer(request)
    if not key:
        raise Open311Error(403, "api_key: required to POST a request (ask the city for a key)", fmt=fmt)
    with request.app.state.session_factory() as session:
        client = client_for_key(session, key)
        if client is None:
            raise Open311Error(403, "api_key: unknown or revoked key", fmt=fmt)
        return client.id
