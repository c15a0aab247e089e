"""The web application factory: review pages, the JSON API under /api/, evidence, OpenAPI at /docs.

`build_app(settings, session_factory)` builds everything from its arguments (nothing at import
time), so tests, `central serve` and the demo each make their own app over their own database.
The settings (config.py) are the ones the ingest consumer and the workflow worker get: the web's
security comes from `settings.web`, the workflow's rules from `settings.workflow`.

Routers: `api/` the JSON API (one module per resource), `web/` the HTML pages (queue, login, city
pages), `api/open311.py` GeoReport v2, `api/evidence.py` the images. A domain error
(errors.py) that a handler lets through becomes `{"detail": ...}` with its one status code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import Response

from streetwatch.central.api import (
    alerts,
    auth,
    candidates,
    cases,
    citizen,
    evidence,
    fleet,
    geojson,
    merchants,
    open311,
    stats,
    workflow,
)
from streetwatch.central.api import health as health_routes
from streetwatch.central.api.deps import LoginRequired
from streetwatch.central.api.input_guard import RefuseNulBytes
from streetwatch.central.api.login_limit import LoginRateLimiter
from streetwatch.central.citizen import CitizenService
from streetwatch.central.config import CentralSettings
from streetwatch.central.errors import DomainError, http_status
from streetwatch.central.metrics import Health, database_check
from streetwatch.central.open311_format import Format, Open311Error, error_document
from streetwatch.central.review import ReviewService
from streetwatch.central.web import account, login, map_pages, pages, workflow_pages
from streetwatch.central.web import fleet as fleet_pages
from streetwatch.central.web.i18n import gettext
from streetwatch.central.web.nearby import NearbyZones
from streetwatch.central.web.pages import refusal_text
from streetwatch.central.web.render import STATIC_DIR, make_templates, render
from streetwatch.central.web_sessions import SessionPolicy
from streetwatch.central.workflow.clock import Clock, system_clock
from streetwatch.central.workflow.service import WorkflowService

log = logging.getLogger(__name__)

SESSION_COOKIE = "streetwatch_session"


def api_router() -> APIRouter:
    router = APIRouter(prefix="/api")
    for module in (candidates, cases, merchants, alerts, workflow, stats, fleet):
        router.include_router(module.router)
    router.include_router(workflow.exports)
    router.include_router(citizen.router)
    router.include_router(auth.router)
    router.include_router(geojson.router)
    return router


# Pages load scripts, styles and images from this origin only (no inline script, no CDN).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_ASSETS = "/docs-assets"


def page_csp(tile_origin: str | None) -> str:
    """The pages' CSP; the city's tile server (map.tile_url) may serve the map's images."""
    if tile_origin is None:
        return PAGE_CSP
    return PAGE_CSP.replace("img-src 'self' data:", f"img-src 'self' data: {tile_origin}")


def _security_headers(path: str, response: Response, csp: str = PAGE_CSP) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if path != "/docs":  # Swagger UI starts itself with an inline script
        response.headers.setdefault("Content-Security-Policy", csp)


def _add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from assets shipped in the fastapi-offline wheel: no CDN, no internet."""
    try:
        import fastapi_offline
    except ImportError:  # docs then load their assets from the default CDN
        log.warning("fastapi-offline is not installed: /docs needs internet access for its assets")
        app.add_api_route("/docs", _cdn_docs, include_in_schema=False)
        return
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="StreetWatch central API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    app.add_api_route("/docs", docs, include_in_schema=False)


def _cdn_docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="StreetWatch central API")


def _warm_caches(app: FastAPI) -> None:
    """Parse the merchant zones for the maps before the first reviewer waits for it."""
    factory: sessionmaker[Session] = app.state.session_factory
    try:
        with factory() as session:
            app.state.nearby_zones.warm(session)
    except SQLAlchemyError as exc:
        log.warning("web: could not pre-load merchant zones (%s); the first page will", exc)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    threading.Thread(target=_warm_caches, args=(app,), name="web-warm-up", daemon=True).start()
    yield


def _error_response(request: Request, exc: StarletteHTTPException) -> Response:
    """An HTML page for browsers on the review pages; JSON `{detail}` for the API and other clients;
    the GeoReport error list under /open311/ (its clients parse nothing else)."""
    if request.url.path.startswith("/open311/"):
        return _open311_error(request, Open311Error(exc.status_code, str(exc.detail)))
    wants_html = "text/html" in request.headers.get("accept", "")
    if not wants_html or request.url.path.startswith(("/api/", "/evidence/")):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "Error"
    context = {"status_code": exc.status_code, "title": gettext(request, title), "detail": exc.detail}
    return render(request, "error.html", context, status_code=exc.status_code, headers=exc.headers)


def _open311_error(request: Request, exc: Open311Error) -> Response:
    """The spec's error list, in the format the path asked for (XML when it names none)."""
    fmt: Format = "json" if request.url.path.rsplit("/", 1)[-1].lower().endswith(".json") else exc.fmt
    body, media_type = error_document(fmt, exc.status, exc.description)
    return Response(body, status_code=exc.status, media_type=media_type)


def _add_error_handlers(app: FastAPI) -> None:
    """A missing login redirects to /login; HTTP and domain errors (errors.py) answer `{detail}` to
    the API and an error page to browsers."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"detail": "Not logged in"}, status_code=401)
        login_url = app.url_path_for("login_page")
        return RedirectResponse(f"{login_url}?{urlencode({'next': exc.next_path})}", status_code=303)

    @app.exception_handler(Open311Error)
    async def _open311(request: Request, exc: Open311Error) -> Response:
        return _open311_error(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, exc: DomainError) -> Response:
        wants_page = "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")
        detail = refusal_text(request, exc) if wants_page else exc.detail
        return _error_response(request, StarletteHTTPException(http_status(exc), detail))


def build_app(
    settings: CentralSettings,
    session_factory: sessionmaker[Session],
    *,
    clock: Clock = system_clock,
    health: Health | None = None,
) -> FastAPI:
    """The app over `session_factory`; refuses to start without a real secret in production mode.
    `clock` is the workflow's time (tests move it); `health` the process's readiness checks for
    /readyz (default: the database alone)."""
    web = settings.web
    secret = web.resolved_secret()
    app = FastAPI(
        title="StreetWatch central",
        summary="Review queue and JSON API for street-order violation cases",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.health = health or Health({"database": database_check(session_factory)})
    app.state.clock = clock
    app.state.review = ReviewService(session_factory, clock=clock, undo_window_s=settings.workflow.undo_window_s)
    app.state.workflow = WorkflowService(session_factory, settings.workflow, clock=clock)
    app.state.citizen = CitizenService(session_factory, clock=clock)
    app.state.templates = make_templates()
    app.state.nearby_zones = NearbyZones()
    app.state.login_limiter = LoginRateLimiter(
        session_factory,
        max_failures=web.login_max_failures,
        max_per_address=web.login_max_failures_per_address,
        window_s=web.login_window_s,
    )
    app.state.session_policy = SessionPolicy(
        idle=timedelta(seconds=web.session_idle_s), max_age=timedelta(seconds=web.session_max_age_s)
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=web.session_max_age_s,
        same_site="lax",
        https_only=web.secure_cookies,
    )

    # Outermost of ours: before the session, the handlers, the database. The largest body is an
    # inspection photo in its form, or a citizen's photo posted to Open311.
    body_cap = max(settings.review.max_photo_bytes, settings.open311.max_media_bytes) + 1024 * 1024
    app.add_middleware(RefuseNulBytes, max_body_bytes=body_cap)
    csp = page_csp(settings.map.tile_origin())

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response = await call_next(request)
        _security_headers(request.url.path, response, csp)
        # Server time of this request, for benchmarks and the browser's network panel.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    _add_error_handlers(app)
    _add_offline_docs(app)
    app.include_router(api_router())
    app.include_router(health_routes.router)
    app.include_router(login.router)
    app.include_router(evidence.router)
    app.include_router(pages.router)
    app.include_router(workflow_pages.router)
    app.include_router(map_pages.router)
    app.include_router(fleet_pages.router)
    app.include_router(account.router)
    app.include_router(open311.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    log.info("web app built (mode %s, secure cookies %s)", web.mode, web.secure_cookies)
    return app
