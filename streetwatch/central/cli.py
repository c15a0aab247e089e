"""The `central` command: migrate, import merchants, ingest, export, users, review, serve.

`main` builds the one CentralSettings (config.py: the YAML file, then the environment, then the
flags) before the command runs, and every command takes what it needs from it: the database URL,
the broker, the web, the workflow. The global options --config, --database-url and -v may come
before or after the command (`central serve --config central.yaml`).
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.config import CentralSettings, ConfigError, Override, load_settings
from streetwatch.central.csv_export import write_csv
from streetwatch.central.db import make_engine, make_session_factory, migrate, session_scope
from streetwatch.central.merchants import MerchantImportError, import_merchants
from streetwatch.central.models import USER_ROLES, Area, Case, Merchant, User
from streetwatch.central.review import DISMISS_REASONS
from streetwatch.redaction import install_log_redaction, redact
from streetwatch.stop_signals import StopSignals
from streetwatch.version import package_version

if TYPE_CHECKING:
    from fastapi import FastAPI

    from streetwatch.central.consumer_jetstream import JetStreamConsumer
    from streetwatch.central.metrics import CentralMetrics, Health
    from streetwatch.central.supervisor import Supervisor

log = logging.getLogger(__name__)

EXPORT_COLUMNS = (
    "id",
    "violation",
    "status",
    "lat",
    "lon",
    "first_seen",
    "last_seen",
    "alert_count",
    "episode_count",
    "merchant_id",
    "merchant_name",
    "attribution_method",
    "attribution_distance_m",
    "priority",
    "area_id",
    "active",
    "merged_into_id",
)


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


# ---------------------------------------------------------------- helpers


def _session_factory(args: argparse.Namespace) -> sessionmaker[Session]:
    return make_session_factory(make_engine(_settings(args).database_url))


def _settings(args: argparse.Namespace) -> CentralSettings:
    settings: CentralSettings = args.settings
    return settings


def export_rows(session: Session) -> list[dict[str, object]]:
    """Every case (merged ones too) with its merchant, status, counts and location, oldest first."""
    rows = session.execute(
        select(Case, Merchant.name).outerjoin(Merchant, Merchant.id == Case.merchant_id).order_by(Case.id)
    )
    return [
        {
            **{column: getattr(case, column) for column in EXPORT_COLUMNS if column != "merchant_name"},
            "merchant_name": merchant_name,
            "first_seen": case.first_seen.isoformat(),
            "last_seen": case.last_seen.isoformat(),
        }
        for case, merchant_name in rows
    ]


def write_export(rows: Sequence[dict[str, object]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump(list(rows), out, ensure_ascii=False, indent=1)
        out.write("\n")
        return
    write_csv(out, EXPORT_COLUMNS, rows)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise CliError(f"--password-env: environment variable {args.password_env} is not set")
        return value
    if not sys.stdin.isatty():
        raise CliError("no terminal to prompt for a password: use --password-env VAR")
    first = getpass.getpass(f"password for {args.username}: ")
    if first != getpass.getpass("repeat: "):
        raise CliError("the passwords differ")
    return first


# ---------------------------------------------------------------- commands


def cmd_migrate(args: argparse.Namespace) -> int:
    migrate(_settings(args).database_url)
    print("database is at the newest schema revision")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from streetwatch.central.config import CentralSettings

    print(json.dumps(CentralSettings.model_json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_import_merchants(args: argparse.Namespace) -> int:
    try:
        with session_scope(_session_factory(args)) as session:
            summary = import_merchants(session, args.file, bbox=_settings(args).map.city_bbox)
    except MerchantImportError as exc:
        raise CliError(str(exc)) from None
    print(f"{args.file}: {summary.created} merchants created, {summary.updated} updated")
    return 0


def cmd_import_basemap(args: argparse.Namespace) -> int:
    """The vector base map (roads, kerbs, buildings) the city map draws where no tiles are reachable."""
    from streetwatch.central.gis.basemap import BasemapError, import_basemap

    settings = _settings(args).map
    attribution = args.attribution if args.attribution is not None else settings.basemap_attribution
    try:
        summary = import_basemap(args.file, settings.basemap_path, attribution=attribution)
    except BasemapError as exc:
        raise CliError(str(exc)) from None
    print(
        f"{args.file}: {summary.roads} roads, {summary.buildings} buildings, {summary.other} other features "
        f"written to {settings.basemap_path} (bounds {', '.join(f'{v:.5f}' for v in summary.bounds)})"
    )
    return 0


def cmd_ingest_jsonl(args: argparse.Namespace) -> int:
    from streetwatch.central.offline import DatabaseUnavailable, ingest_jsonl

    if not args.file.is_file():
        raise CliError(f"{args.file}: no such file")
    try:
        summary = ingest_jsonl(args.file, session_factory=_session_factory(args), settings=_settings(args))
    except DatabaseUnavailable as exc:
        raise CliError(str(exc)) from None
    print(
        f"{args.file}: {summary.total} alerts: {summary.created} opened a case, {summary.joined} joined a "
        f"case, {summary.pending} pending sightings, {summary.duplicate} duplicates, "
        f"{summary.dead_letter} dead letters"
    )
    for reason in summary.reasons:
        print(f"  dead letter: {reason}")
    return 0


def cmd_export_cases(args: argparse.Namespace) -> int:
    if args.format == "geojson":
        return _export_cases_geojson(args)
    with session_scope(_session_factory(args)) as session:
        rows = export_rows(session)
    if args.output is None:
        write_export(rows, args.format, sys.stdout)
    else:
        buffer = io.StringIO()
        write_export(rows, args.format, buffer)
        args.output.write_text(buffer.getvalue(), encoding="utf-8")
        print(f"{len(rows)} cases written to {args.output}", file=sys.stderr)
    return 0


def _export_cases_geojson(args: argparse.Namespace) -> int:
    """Every located, unmerged case as an RFC 7946 FeatureCollection (what /api/cases.geojson gives)."""
    from streetwatch.central.api.queries import merchants_by_id
    from streetwatch.central.gis.geojson_out import cases_collection
    from streetwatch.central.gis.queries import GeoCaseFilters, located_cases

    with session_scope(_session_factory(args)) as session:
        cases = located_cases(session, GeoCaseFilters(), scopes=[], limit=10_000_000)
        doc = cases_collection(cases, merchants_by_id(session, [c.merchant_id for c in cases]))
    text = json.dumps(doc, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"{len(doc['features'])} located cases written to {args.output}", file=sys.stderr)
    return 0


def cmd_export_lifecycle(args: argparse.Namespace) -> int:
    """Cases on the national lifecycle with event class codes (streetwatch.central.workflow.lifecycle)."""
    from streetwatch.central.workflow.lifecycle import lifecycle_rows, rows_to_csv, rows_to_json

    with session_scope(_session_factory(args)) as session:
        rows = lifecycle_rows(session, settings=_settings(args).workflow)
    as_json = json.dumps(rows_to_json(rows), ensure_ascii=False, indent=1) + "\n"
    text = rows_to_csv(rows) if args.format == "csv" else as_json
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"{len(rows)} cases written to {args.output}", file=sys.stderr)
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    from streetwatch.central.passwords import hash_password

    password = _read_password(args)
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        with session_scope(_session_factory(args)) as session:
            if args.area and session.get(Area, args.area) is None:
                raise CliError(f"--area: unknown area {args.area!r}")
            session.add(
                User(
                    username=args.username,
                    password_hash=password_hash,
                    role=args.role,
                    area_id=args.area,
                    is_active=True,
                )
            )
    except IntegrityError:
        raise CliError(f"user {args.username!r} already exists") from None
    print(f"user {args.username} created ({args.role}, {'area ' + args.area if args.area else 'city-wide'})")
    return 0


def cmd_create_token(args: argparse.Namespace) -> int:
    from streetwatch.central.api.tokens import TokenError, issue_token

    try:
        token = issue_token(_session_factory(args), username=args.username, name=args.name, actor="cli")
    except TokenError as exc:
        raise CliError(str(exc)) from None
    # The secret is shown once: only its hash is stored.
    print(f"token {token.id} for {token.username}: {token.secret}")
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    from streetwatch.central.api.tokens import revoke_token

    if not revoke_token(_session_factory(args), args.token_id, actor="cli"):
        raise CliError(f"token {args.token_id}: no such active token")
    print(f"token {args.token_id} revoked")
    return 0


def cmd_logout_user(args: argparse.Namespace) -> int:
    """End every web session of a user (a lost phone, a leaver): their cookies stop working now."""
    from sqlalchemy import select

    from streetwatch.central.models import User
    from streetwatch.central.web_sessions import end_all_sessions

    factory = _session_factory(args)
    with factory() as session:
        user_id = session.scalars(select(User.id).where(User.username == args.username)).one_or_none()
    if user_id is None:
        raise CliError(f"username: no user {args.username!r}")
    ended = end_all_sessions(factory, user_id, actor="cli")
    print(f"user {args.username}: {ended} sessions ended")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from streetwatch.central.review_cli import ReviewCliError, gather, run_review

    try:
        decisions = gather(args.case_ids, args.file)
        lines, refused = run_review(
            _session_factory(args), args.action, decisions, username=args.user, reason=args.reason
        )
    except ReviewCliError as exc:
        raise CliError(str(exc)) from None
    for line in lines:
        print(line)
    if refused:
        print(f"{refused} of {len(decisions)} cases refused", file=sys.stderr)
    return 1 if refused else 0


def cmd_open311_key(args: argparse.Namespace) -> int:
    """Open311 client keys: create (printed once), revoke, list (streetwatch.central.open311_keys)."""
    from streetwatch.central.open311_keys import Open311KeyError, issue_key, list_clients, revoke_key

    factory = _session_factory(args)
    try:
        if args.action == "create":
            issued = issue_key(factory, name=args.name or "", actor="cli")
            print(f"open311 client {issued.id} ({issued.name}): {issued.secret}")  # shown once: only its hash is kept
        elif args.action == "revoke":
            client_id = args.client_id if args.client_id is not None else _client_id_arg(args.name)
            if not revoke_key(factory, client_id, actor="cli"):
                raise CliError(f"open311 client {client_id}: its key is already revoked")
            print(f"open311 client {client_id}: key revoked")
        else:
            with factory() as session:
                for row in list_clients(session):
                    state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "active"
                    print(f"{row.id}\t{row.name}\tcreated {row.created_at.isoformat()}\t{state}")
    except Open311KeyError as exc:
        raise CliError(str(exc)) from None
    return 0


def _client_id_arg(value: str | None) -> int:
    if value is None or not value.isdigit() or len(value) > 9:
        raise CliError(f"open311-key revoke: expected the client's id (open311-key list shows them), got {value!r}")
    return int(value)


def cmd_export_reporters(args: argparse.Namespace) -> int:
    """Citizen reporters with their verified-report counts (the reward scheme), as CSV."""
    from streetwatch.central.citizen import reporters_csv

    with session_scope(_session_factory(args)) as session:
        text = reporters_csv(session)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"{text.count(chr(10)) - 1} reporters written to {args.output}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Ingest, the fleet (boxes' status, the delivery audit) and the workflow in supervised threads;
    the web app in the foreground when installed.

    Exit status 0 after SIGTERM/SIGINT (the batch in hand committed and acknowledged first), 1 when
    a worker thread ended unasked (supervisor.py: the service manager restarts the process)."""
    from streetwatch.central.consumer import freeze_startup_objects
    from streetwatch.central.supervisor import Supervisor

    settings = _settings(args)
    factory = _session_factory(args)
    if args.no_ingest:
        return _serve_web_only(settings, factory)
    stop = threading.Event()
    supervisor = Supervisor(stop)
    health = _start_workers(settings, factory, supervisor, stop)
    try:
        app = None if args.no_web else _build_web_app(settings, factory, health)
        freeze_startup_objects()  # the web app's objects too (the consumer froze what it loaded)
        if app is None:
            # SIGTERM (what a service manager or a container stop sends) ends ingest the way Ctrl-C
            # does: the batch in hand is committed and acknowledged, then the consumer disconnects.
            StopSignals(stop.set).install(signal.SIGTERM)
            log.info("serving ingest only (no web app); Ctrl-C or SIGTERM stops")
            while not stop.wait(0.5) and supervisor.check():
                pass
        else:
            _serve_web(app, settings, supervisor)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        supervisor.join(10)
    return 1 if supervisor.failed else 0


def _serve_web_only(settings: CentralSettings, factory: sessionmaker[Session]) -> int:
    """The web queue alone (more processes behind a load balancer, beside `serve --no-web`)."""
    import uvicorn

    from streetwatch.central.web.serving import uvicorn_config

    app = _build_web_app(settings, factory)
    if app is None:
        raise CliError("serve --no-ingest: the web app is not installed (pip install 'streetwatch[central]')")
    uvicorn.Server(uvicorn_config(app, settings.web)).run()
    return 0


def _start_workers(
    settings: CentralSettings, factory: sessionmaker[Session], supervisor: Supervisor, stop: threading.Event
) -> Health:
    """The ingest consumer, the fleet worker and the workflow engine under `supervisor`; their
    readiness checks, and /metrics when settings.metrics.port is set."""
    from streetwatch.central.consumer import AlertConsumer, keep_consuming
    from streetwatch.central.fleet import FleetWorker
    from streetwatch.central.metrics import CentralMetrics, Health, beat_check, database_check, serve_metrics
    from streetwatch.central.workflow.worker import WorkflowEngine

    metrics = CentralMetrics(factory)
    consumer: AlertConsumer | JetStreamConsumer
    if settings.broker.kind == "jetstream":
        consumer = _jetstream_consumer(settings, factory, metrics)
    else:
        consumer = AlertConsumer(settings=settings, session_factory=factory, metrics=metrics)
    workflow = WorkflowEngine(factory, settings.workflow)
    health = Health()
    health.add("database", database_check(factory))
    health.add("broker", lambda: None if consumer.subscribed.is_set() else "not subscribed to the alerts")
    health.add("ingest", beat_check(lambda: consumer.heartbeat, alive=lambda: consumer.alive, stall_s=60,
                                    what="ingest"))
    supervisor.start("ingest", keep_consuming, consumer, stop)
    supervisor.start("workflow", workflow.run, stop)
    if settings.delivery.enabled:
        fleet = FleetWorker(settings, factory, metrics=metrics)
        supervisor.start("fleet", fleet.run, stop)
        stall = 3 * settings.delivery.audit_interval_s + 60
        health.add("fleet", beat_check(lambda: fleet.last_tick, alive=lambda: True, stall_s=stall, what="fleet"))
    if settings.metrics.port:
        serve_metrics(metrics, health, host=settings.metrics.host, port=settings.metrics.port)
    return health


def _jetstream_consumer(
    settings: CentralSettings, factory: sessionmaker[Session], metrics: CentralMetrics
) -> JetStreamConsumer:
    """The JetStream consumer; its client (nats-py) is the `cluster` extra, imported only here."""
    try:
        from streetwatch.central.consumer_jetstream import JetStreamConsumer
    except ImportError as exc:
        raise CliError(f"broker.kind: jetstream needs the NATS client ({exc}); "
                       "pip install 'streetwatch[central,cluster]'") from None
    return JetStreamConsumer(settings=settings, session_factory=factory, metrics=metrics)


def _serve_web(app: FastAPI, settings: CentralSettings, supervisor: Supervisor) -> None:
    """uvicorn in the foreground (it handles SIGTERM); a dead worker thread makes it exit too."""
    import uvicorn

    from streetwatch.central.web.serving import uvicorn_config

    server = uvicorn.Server(uvicorn_config(app, settings.web))
    supervisor.on_failure = lambda: setattr(server, "should_exit", True)
    supervisor.watch()
    server.run()


def _build_web_app(
    settings: CentralSettings, factory: sessionmaker[Session], health: Health | None = None
) -> FastAPI | None:
    # HOOK: the web queue + JSON API (streetwatch.central.app.build_app), when installed.
    try:
        from streetwatch.central.app import build_app
    except ImportError as exc:
        log.warning("web app not available (%s): serving ingest only", exc)
        return None
    return build_app(settings, factory, health=health)


# ---------------------------------------------------------------- parser

# Flags that set a setting (the last layer, over the file and the environment): dest -> (path, flag).
FLAG_SETTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "database_url": (("database_url",), "--database-url"),
    "port": (("web", "port"), "--port"),
    "broker_url": (("broker", "url"), "--broker-url"),
}


def _global_options() -> argparse.ArgumentParser:
    """--config, --database-url, -v: accepted before and after the command (SUPPRESS keeps a value
    given before the command when the command's parser does not see it again)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--database-url", default=argparse.SUPPRESS, help="default: $STREETWATCH_DATABASE_URL, the file, or var/"
    )
    options.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="settings YAML (configs/central.example.yaml)"
    )
    options.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return options


def build_parser() -> argparse.ArgumentParser:
    options = _global_options()
    parser = argparse.ArgumentParser(prog="central", description=__doc__.splitlines()[0], parents=[options])
    parser.add_argument("--version", action="version", version=f"central (streetwatch) {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[options])

    command("migrate", "create or upgrade the database schema").set_defaults(func=cmd_migrate)
    command("config-schema", "print the settings file's JSON Schema (editor completion)").set_defaults(
        func=cmd_config_schema, needs_settings=False
    )

    p = command("import-merchants", "load merchants from GeoJSON or CSV (WKT); updates by id")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_import_merchants)

    p = command("import-basemap", "load the map's vector base layer (roads, kerbs, buildings) from GeoJSON or .osm.pbf")
    p.add_argument("file", type=Path)
    p.add_argument("--attribution", default=None, help="shown on the map (default: map.basemap_attribution)")
    p.set_defaults(func=cmd_import_basemap)

    p = command("ingest-jsonl", "ingest alerts from a file, one JSON alert per line")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_ingest_jsonl)

    p = command("export-cases", "every case with merchant, status, alert count, location")
    p.add_argument("--format", choices=("json", "csv", "geojson"), default="json",
                   help="geojson: the located cases as an RFC 7946 FeatureCollection")
    p.add_argument("--output", type=Path, default=None, help="default: standard output")
    p.set_defaults(func=cmd_export_cases)

    p = command("export-lifecycle", "cases on the national lifecycle (立案..结案) with event codes")
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--output", type=Path, default=None, help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export_lifecycle)

    p = command("create-user", "add a reviewer or admin")
    p.add_argument("username")
    p.add_argument("--role", choices=USER_ROLES, default="reviewer")
    p.add_argument("--area", default=None, help="area id the user may see; default: city-wide")
    p.add_argument(
        "--password-env", default=None, help="environment variable with the password (else prompt)"
    )
    p.set_defaults(func=cmd_create_user)

    p = command("create-token", "issue an API token for a user (printed once)")
    p.add_argument("username")
    p.add_argument("--name", default="", help="what the token is for")
    p.set_defaults(func=cmd_create_token)

    p = command("revoke-token", "revoke an API token by its id")
    p.add_argument("token_id", type=int)
    p.set_defaults(func=cmd_revoke_token)

    p = command("logout-user", "end every web session of a user (log out everywhere)")
    p.add_argument("username")
    p.set_defaults(func=cmd_logout_user)

    p = command("review", "confirm or dismiss cases from a script (the desk's review actions)")
    p.add_argument("action", choices=("confirm", "dismiss"))
    p.add_argument("case_ids", type=int, nargs="*", metavar="ID", help="case ids")
    p.add_argument("--file", type=Path, default=None, help="one case per line: ID, or for dismiss ID REASON")
    p.add_argument("--reason", default=None, help="dismissal reason: " + ", ".join(DISMISS_REASONS))
    p.add_argument("--user", required=True, help="the reviewer the audit log names (an existing user)")
    p.set_defaults(func=cmd_review)

    p = command("open311-key", "Open311 client keys (api_key for citizen reports): create NAME, revoke ID, list")
    p.add_argument("action", choices=("create", "revoke", "list"))
    p.add_argument("name", nargs="?", default=None, help="create: what the client is ('city 311 app'); revoke: its id")
    p.add_argument("--client-id", type=int, default=None, help="revoke: the client's id (from list)")
    p.set_defaults(func=cmd_open311_key)

    p = command("export-reporters", "citizen reporters and their verified-report counts (CSV, with contacts)")
    p.add_argument("--output", type=Path, default=None, help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export_reporters)

    p = command("serve", "run ingest (and the web queue when installed)")
    web_or_ingest = p.add_mutually_exclusive_group()
    web_or_ingest.add_argument("--no-web", action="store_true", help="ingest and the workflow worker only")
    web_or_ingest.add_argument("--no-ingest", action="store_true", help="the web queue only (no broker needed)")
    p.set_defaults(func=cmd_serve, needs_broker=True)

    p = command("demo", "everything on one machine: broker, edge replaying footage, queue")
    p.add_argument("--port", type=int, default=None, help="web queue port (default: web.port, 8000)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the demo's files here (default: temp)")
    p.add_argument(
        "--broker-url", default=None, help="default: broker.url if set ($STREETWATCH_MQTT_URL), else an embedded broker"
    )
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from streetwatch.demo import default_assets_dir, run_demo

    # Start-up: the demo's footage and model folders, like the tests' ($STREETWATCH_ASSETS_DIR).
    assets = Path(os.environ.get("STREETWATCH_ASSETS_DIR") or default_assets_dir())
    model_dir = Path(os.environ.get("STREETWATCH_MODEL_DIR") or assets)
    return run_demo(_settings(args), workdir=args.workdir, assets_dir=assets, model_dir=model_dir)


def flag_overrides(args: argparse.Namespace) -> list[Override]:
    """The settings the command line sets (FLAG_SETTINGS), for load_settings' last layer."""
    return [
        Override(path, getattr(args, dest), flag)
        for dest, (path, flag) in FLAG_SETTINGS.items()
        if getattr(args, dest, None) is not None
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()  # URL passwords and secrets from ${VAR} never reach a log line
    if not getattr(args, "needs_settings", True):
        return int(args.func(args))
    try:
        # The one read of the environment: everything after this gets the settings object.
        args.settings = load_settings(
            getattr(args, "config", None),
            environ=os.environ,
            flags=flag_overrides(args),
            broker_password=getattr(args, "needs_broker", False) and not getattr(args, "no_ingest", False),
        )
        return int(args.func(args))
    except (CliError, ConfigError) as exc:
        print(f"central: error: {redact(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
