"""Central settings: the example file loads and documents every setting, typos fail naming the
source (file, variable or flag) and the field, and the layers override in the documented order:
YAML < environment < flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from streetwatch.central.cli import main
from streetwatch.central.config import CentralSettings, ConfigError, Override, load_settings
from streetwatch.central.evidence_store import EvidenceError, EvidenceStore, decode_jpeg_b64

REPO = Path(__file__).resolve().parents[2]


def test_example_file_loads_with_documented_defaults() -> None:
    settings = load_settings(REPO / "configs" / "central.example.yaml", environ={})
    assert settings.broker.subscription == "$share/central/streetwatch/v1/alerts/#"
    assert settings.cases.radius_m == {"illegal_parking": 15, "street_vending": 25, "stacked_goods": 15}
    assert settings.attribution.max_distance_m == 10
    assert settings == load_settings(None, environ={})  # the example shows the defaults


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("brokr: {}\n", "brokr: Extra inputs are not permitted"),
        ("broker: {url: 'http://x'}\n", "broker.url: Value error, expected mqtt://host:port"),
        (
            "cases: {radius_m: {illegal_parking: -1}}\n",
            "cases.radius_m: Value error, illegal_parking: expected a number > 0",
        ),
        ("cases: {radius_m: {jaywalking: 5}}\n", "cases.radius_m.jaywalking"),
        ("attribution: {max_distance_m: 5000}\n", "attribution.max_distance_m"),
        ("- a list\n", "expected a mapping at the top level"),
        ("broker: [\n", "not valid YAML"),
    ],
    ids=["typo", "url", "negative-radius", "unknown-violation", "too-far", "not-mapping", "bad-yaml"],
)
def test_bad_settings_name_file_and_field(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value) and message in str(info.value)


def test_partial_tables_keep_defaults_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(
        "cases: {radius_m: {street_vending: 40}}\nbroker: {client_id: central-7}\n", encoding="utf-8"
    )
    env = {
        "STREETWATCH_CENTRAL_CONFIG": str(path),
        "STREETWATCH_MQTT_URL": "mqtts://broker.city:8883",
        "STREETWATCH_EVIDENCE_DIR": str(tmp_path / "ev"),
    }
    settings = load_settings(None, environ=env)
    assert settings.cases.radius_m == {"illegal_parking": 15, "street_vending": 40, "stacked_goods": 15}
    assert (settings.broker.url, settings.broker.client_id) == ("mqtts://broker.city:8883", "central-7")
    assert settings.evidence_dir == tmp_path / "ev"


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names.extend(_leaf_fields(kind, f"{prefix}{name}."))
        else:
            names.append(f"{prefix}{name}")
    return names


def test_the_example_file_documents_every_setting() -> None:
    """A setting added to CentralSettings without a line in the example fails here."""
    text = (REPO / "configs" / "central.example.yaml").read_text(encoding="utf-8")
    undocumented = [
        path
        for path in _leaf_fields(CentralSettings)
        if path != "broker_password"  # read from the variable broker.password_env names, never the file
        and not re.search(rf"^\s*#?\s*{re.escape(path.split('.')[-1])}:", text, flags=re.MULTILINE)
    ]
    assert undocumented == []
    assert "workflow.rectify_window_min" in _leaf_fields(CentralSettings)  # the walk reaches nested sections


YAML_DB = "sqlite:///from-yaml.sqlite"
ENV_DB = "sqlite:///from-env.sqlite"
FLAG_DB = "sqlite:///from-flag.sqlite"


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, [], YAML_DB),
        ({"STREETWATCH_DATABASE_URL": ENV_DB}, [], ENV_DB),
        ({"STREETWATCH_DATABASE_URL": ENV_DB}, [Override(("database_url",), FLAG_DB, "--database-url")], FLAG_DB),
        ({}, [Override(("database_url",), FLAG_DB, "--database-url")], FLAG_DB),
    ],
    ids=["yaml", "env-over-yaml", "flag-over-env", "flag-over-yaml"],
)
def test_layers_override_in_order_yaml_env_flag(
    tmp_path: Path, env: dict[str, str], flags: list[Override], expected: str
) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(f"database_url: {YAML_DB}\nworkflow: {{rectify_window_min: 10, red_at: 7}}\n", encoding="utf-8")
    settings = load_settings(path, environ=env, flags=flags)
    assert settings.database_url == expected
    assert (settings.workflow.rectify_window_min, settings.workflow.red_at) == (10, 7)  # untouched by the layers


def test_every_setting_can_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text("workflow: {rectify_window_min: 10, hotspot_threshold: 4}\n", encoding="utf-8")
    env = {
        "STREETWATCH_RECTIFY_WINDOW_MIN": "20",  # the old name of a nested field
        "STREETWATCH_WORKFLOW__HOTSPOT_THRESHOLD": "3",  # any field as SECTION__FIELD
        "STREETWATCH_CASES__RADIUS_M__STREET_VENDING": "40",
        "STREETWATCH_MODE": " Development ",
        "STREETWATCH_OPEN311_PUBLIC": "1",
        "STREETWATCH_WEBHOOK_SECRET": "hmac-key",
    }
    settings = load_settings(path, environ=env)
    assert (settings.workflow.rectify_window_min, settings.workflow.hotspot_threshold) == (20, 3)
    assert settings.cases.radius_m["street_vending"] == 40 and settings.cases.radius_m["illegal_parking"] == 15
    assert (settings.web.mode, settings.open311.public) == ("development", True)
    assert settings.workflow.webhook_secret is not None
    assert settings.workflow.webhook_secret.get_secret_value() == "hmac-key"
    assert "hmac-key" not in repr(settings)


def test_a_city_may_set_some_event_codes_and_keep_the_others(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text("workflow:\n  event_classes:\n    illegal_parking: {code: SZ-0301, category: 市容, name: 违停}\n")
    classes = load_settings(path, environ={}).workflow.event_classes
    assert {v: c.code for v, c in classes.items()} == {
        "illegal_parking": "SZ-0301", "street_vending": "SO-01", "stacked_goods": "SO-02"
    }


def test_the_command_line_wins_over_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through `central migrate`: only the flag's database is created and migrated."""
    dbs = {name: tmp_path / f"{name}.sqlite" for name in ("yaml", "env", "flag")}
    path = tmp_path / "central.yaml"
    path.write_text(f"database_url: sqlite:///{dbs['yaml']}\n", encoding="utf-8")
    monkeypatch.setenv("STREETWATCH_DATABASE_URL", f"sqlite:///{dbs['env']}")
    assert main(["migrate", "--config", str(path)]) == 0
    assert [n for n, p in dbs.items() if p.exists()] == ["env"]
    assert main(["migrate", "--config", str(path), "--database-url", f"sqlite:///{dbs['flag']}"]) == 0
    assert [n for n, p in dbs.items() if p.exists()] == ["env", "flag"]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("yaml_text", "env", "flags", "message"),
    [
        ("", {"STREETWATCH_RECTIFY_WINDOW_MIN": "-3"}, [],
         "$STREETWATCH_RECTIFY_WINDOW_MIN: workflow.rectify_window_min: Input should be greater than 0 (got '-3')"),
        ("", {"STREETWATCH_MODE": "staging"}, [], "$STREETWATCH_MODE: web.mode: Input should be 'production'"),
        ("", {"STREETWATCH_WORKFLOW__REDAT": "6"}, [], "$STREETWATCH_WORKFLOW__REDAT: workflow.redat: Extra inputs"),
        ("workflow: {yellow_at: 6}\n", {}, [], "{file}: workflow: Value error, yellow_at (6) must be below red_at (5)"),
        ("", {}, [Override(("database_url",), "", "--database-url")],
         "--database-url: database_url: String should have at least 1 character"),
        ("web: {secret_key: hunter2-hunter2-hunter2-hunter2-x}\n", {}, [],
         "{file}: web.secret_key: secrets do not belong in the file; set STREETWATCH_SECRET_KEY instead"),
        ("workflow: {webhook_secret: abc}\n", {}, [], "set STREETWATCH_WEBHOOK_SECRET instead"),
        ("broker: {password_env: SW_TEST_NOT_SET}\n", {}, [],
         "{file}: broker.password_env: environment variable SW_TEST_NOT_SET is not set"),
        ("broker: tcp\n", {"STREETWATCH_MQTT_URL": "mqtt://h:1"}, [], "{file}: broker: expected a mapping, got str"),
    ],
    ids=["env-bound", "env-literal", "env-typo", "cross-field", "flag", "secret-in-file", "webhook-secret",
         "broker-password-missing", "section-not-mapping"],
)
def test_errors_name_the_source_the_field_and_what_arrived(
    tmp_path: Path, yaml_text: str, env: dict[str, str], flags: list[Override], message: str
) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env, flags=flags)
    assert message.format(file=path) in str(info.value)


def test_the_broker_password_is_read_once_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "central.yaml"
    path.write_text("broker: {username: central, password_env: SW_TEST_BROKER_PW}\n", encoding="utf-8")
    settings = load_settings(path, environ={"SW_TEST_BROKER_PW": "s3cret-broker"})
    assert settings.broker_password_value() == "s3cret-broker"
    assert "s3cret-broker" not in repr(settings) and "s3cret-broker" not in settings.model_dump_json()
    without = load_settings(path, environ={}, broker_password=False)  # e.g. `central migrate`
    with pytest.raises(ConfigError, match="SW_TEST_BROKER_PW was not read at start-up"):
        without.broker_password_value()


@pytest.mark.parametrize(
    ("sha", "ok"),
    [("a" * 64, True), ("A" * 64, False), ("a" * 63, False), ("../" + "a" * 61, False)],
)
def test_evidence_paths_accept_only_sha256(tmp_path: Path, sha: str, ok: bool) -> None:
    store = EvidenceStore(tmp_path)
    if ok:
        assert store.path_for(sha) == tmp_path / sha[:2] / f"{sha}.jpg"
    else:
        with pytest.raises(EvidenceError, match="sha256: expected 64 lowercase hex"):
            store.path_for(sha)


def test_decode_rejects_non_jpeg() -> None:
    with pytest.raises(EvidenceError, match="expected a JPEG"):
        decode_jpeg_b64("iVBORw0KGgo=")  # a PNG signature


# Every place in central (and the demo) that may read the process environment, and why.
ENVIRONMENT_READS = {
    ("central/cli.py", "main"): "the one read: os.environ handed to load_settings before the command runs",
    ("central/cli.py", "cmd_demo"): "the demo's footage and model folders, at its start",
    ("central/cli.py", "_read_password"): "create-user --password-env: the variable the admin names",
}


def _environment_reads(path: Path) -> set[str]:
    """Qualified names of the functions in `path` that touch os.environ or os.getenv."""
    import ast

    found: set[str] = set()

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = [*scope, child.name] if isinstance(child, ast.FunctionDef | ast.ClassDef) else scope
            is_os = isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) and child.value.id == "os"
            if is_os and child.attr in ("environ", "getenv"):  # type: ignore[attr-defined]
                found.add(".".join(scope) or "<module>")
            if isinstance(child, ast.ImportFrom) and child.module == "os":
                found.add(".".join(scope) or "<module>")
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), [])
    return found


def test_nothing_reads_the_environment_after_start_up() -> None:
    package = REPO / "streetwatch"
    files = [*sorted((package / "central").rglob("*.py")), package / "demo.py"]
    reads = {(str(f.relative_to(package)), name) for f in files for name in _environment_reads(f)}
    assert reads == set(ENVIRONMENT_READS)
    callers = [f for f in files if ".password()" in f.read_text(encoding="utf-8")]
    assert callers == []  # the consumer takes settings.broker_password, read once by load_settings
