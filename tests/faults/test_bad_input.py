"""Property-based fuzzing (hypothesis) of everything that reads outside input: the alert parser,
the edge config loader, merchant GeoJSON/CSV import and the telemetry parsers.

The property is the same everywhere: the input is either accepted or refused with the module's
own error type whose message says why (and names the file where there is one); nothing else is
ever raised. Inputs are random bytes and text, and, more usefully, valid documents with one part
replaced by a random JSON value, which reaches the validation code rather than the first
"not JSON" check. (Corrupt video is covered by tests/edge/test_sources.py: garbage, truncated and
audio-only files and corrupt packets are skipped with a log line.)
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import UTC
from pathlib import Path

import yaml
from factories import make_alert
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streetwatch import demo
from streetwatch.central.merchants import MerchantImportError, read_merchants
from streetwatch.edge.alerts import Alert, AlertRejected, parse_alert
from streetwatch.edge.config import ConfigError, EdgeConfig, load_edge_config
from streetwatch.edge.telemetry.gpx import parse_gpx
from streetwatch.edge.telemetry.klv import KlvError, decode_uas_local_set
from streetwatch.edge.telemetry.mqtt_json import TelemetryRejected, parse_telemetry
from streetwatch.edge.telemetry.nmea import parse_nmea_lines
from streetwatch.edge.telemetry.pose import ParseStats
from streetwatch.edge.telemetry.srt import parse_srt

REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def mutate(document: object, path: list[int], value: object) -> object:
    """Replace one node of a JSON-like document, chosen by `path` (indexes taken modulo size)."""
    if not path or not isinstance(document, dict | list) or not document:
        return value
    if isinstance(document, dict):
        key = sorted(document, key=str)[path[0] % len(document)]
        return {**document, key: mutate(document[key], path[1:], value)}
    index = path[0] % len(document)
    return [*document[:index], mutate(document[index], path[1:], value), *document[index + 1:]]


def drop(document: object, path: list[int]) -> object:
    """Remove one key somewhere in the document (a missing field)."""
    if not isinstance(document, dict) or not document:
        return document
    key = sorted(document, key=str)[path[0] % len(document)] if path else None
    if key is None:
        return document
    if len(path) == 1 or not isinstance(document[key], dict):
        return {k: v for k, v in document.items() if k != key}
    return {**document, key: drop(document[key], path[1:])}


paths = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=4)
VALID_ALERT = json.loads(make_alert().to_json())


def check_alert(payload: bytes | str) -> None:
    try:
        assert isinstance(parse_alert(payload), Alert)
    except AlertRejected as exc:
        assert str(exc).strip(), "a rejection says why"


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_alert_parser_on_random_bytes(payload: bytes | str) -> None:
    check_alert(payload)


@FUZZ
@given(paths, json_values, st.booleans())
def test_alert_parser_on_damaged_alerts(path: list[int], value: object, remove: bool) -> None:
    document = drop(VALID_ALERT, path) if remove else mutate(VALID_ALERT, path, value)
    check_alert(json.dumps(document))


def test_alert_parser_accepts_the_valid_alert_it_is_fuzzed_from() -> None:
    assert parse_alert(json.dumps(VALID_ALERT)).alert_id == VALID_ALERT["alert_id"]


EXAMPLE_CONFIG = yaml.safe_load((REPO / "configs" / "edge.example.yaml").read_text())


def load_config_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "edge.yaml"
        path.write_text(text)
        try:
            assert isinstance(load_edge_config(path), EdgeConfig)
        except ConfigError as exc:
            assert str(path) in str(exc), f"the error names the file: {exc}"


@FUZZ
@given(paths, json_values, st.booleans())
def test_edge_config_loader_on_damaged_configs(path: list[int], value: object, remove: bool) -> None:
    document = drop(EXAMPLE_CONFIG, path) if remove else mutate(EXAMPLE_CONFIG, path, value)
    load_config_text(yaml.safe_dump(document))


@FUZZ
@given(st.text(max_size=300))
def test_edge_config_loader_on_random_text(text: str) -> None:
    load_config_text(text)


MERCHANTS = demo.merchants_geojson()


def read_merchant_text(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"merchants{suffix}"
        path.write_text(text)
        try:
            read_merchants(path)
        except MerchantImportError as exc:
            assert str(path) in str(exc), f"the error names the file: {exc}"


@FUZZ
@given(paths, json_values, st.booleans())
def test_merchant_geojson_import_on_damaged_files(path: list[int], value: object, remove: bool) -> None:
    document = drop(MERCHANTS, path) if remove else mutate(MERCHANTS, path, value)
    read_merchant_text(json.dumps(document), ".geojson")


def _csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


VALID_CSV_ROW = {"id": "m-1", "name": "Shop", "address": "1 Road", "licence": "L1", "contact": "c",
                 "road": "Road", "wkt": "POLYGON ((120.1 31.1, 120.2 31.1, 120.2 31.2, 120.1 31.1))"}


@FUZZ
@given(st.sampled_from(sorted(VALID_CSV_ROW)), st.text(max_size=60), st.text(max_size=200))
def test_merchant_csv_import_on_damaged_rows(column: str, value: str, noise: str) -> None:
    read_merchant_text(_csv_text([VALID_CSV_ROW, {**VALID_CSV_ROW, "id": "m-2", column: value}]), ".csv")
    read_merchant_text(noise, ".csv")


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_telemetry_message_parser(payload: bytes | str) -> None:
    try:
        parse_telemetry(payload)
    except TelemetryRejected as exc:
        assert str(exc).strip()


@FUZZ
@given(st.lists(st.text(max_size=90) | st.binary(max_size=90), max_size=20),
       st.sampled_from(["$GPRMC,", "$GPGGA,", "$GNRMC,123519,A,4807.038,N,01131.000,E,"]))
def test_nmea_parser_never_raises(lines: list[str | bytes], prefix: str) -> None:
    fed = [prefix + line if isinstance(line, str) else line for line in lines]
    list(parse_nmea_lines(fed, source="fuzz", stats=ParseStats("fuzz")))


@FUZZ
@given(st.text(max_size=400))
def test_srt_parser_never_raises(text: str) -> None:
    parse_srt(text, clock_tz=UTC, source="fuzz", stats=ParseStats("fuzz"))


@FUZZ
@given(st.text(max_size=300))
def test_gpx_parser_refuses_with_the_source_named(text: str) -> None:
    try:
        parse_gpx(text, source="fuzz.gpx", stats=ParseStats("fuzz.gpx"))
    except ValueError as exc:
        assert "fuzz.gpx" in str(exc)


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_klv_decoder_refuses_with_klv_error(data: bytes, keyed: bool) -> None:
    key = bytes.fromhex("060e2b34020b01010e01030101000000")  # the ST 0601 UAS local set key
    try:
        decode_uas_local_set(key + data if keyed else data, stats=ParseStats("fuzz"))
    except KlvError as exc:
        assert str(exc).strip()
