"""The pure parts behind Open311: the XML/JSON documents, the CSV cells a spreadsheet must not run,
the citizen photo check, and the `central open311-key` command."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import xmltodict
from PIL import Image
from pydantic import ValidationError

from streetwatch.central.citizen_photos import PhotoError, photo_as_jpeg
from streetwatch.central.cli import main as cli_main
from streetwatch.central.config import Open311Settings, WebSettings
from streetwatch.central.csv_export import safe_cell, to_csv
from streetwatch.central.open311_format import Open311Error, error_document, render, split_format


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+86 138", "'+86 138"),
        ("-1+2", "'-1+2"),
        ("@cmd", "'@cmd"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("王=1", "王=1"),  # only a leading sign makes a formula
        ("plain", "plain"),
        (-3, -3),  # numbers stay numbers
        (None, ""),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, written: object) -> None:
    assert safe_cell(value) == written
    text = to_csv(("a",), [{"a": value}])
    assert list(csv.reader(io.StringIO(text, newline="")))[1] == [str(written)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("requests.json", ("requests", "json")),
        ("requests.XML", ("requests", "xml")),
        ("requests", ("requests", "xml")),  # the spec's default
        ("12.json", ("12", "json")),
        ("a.b.json", ("a.b", "json")),
    ],
)
def test_a_path_names_its_format(name: str, expected: tuple[str, str]) -> None:
    assert split_format(name) == expected


def test_an_unknown_format_is_the_specs_404() -> None:
    with pytest.raises(Open311Error) as refused:
        split_format("requests.csv")
    assert refused.value.status == 404 and ".csv" in refused.value.description


def test_xml_and_json_carry_the_same_document() -> None:
    record = {"service_code": "x", "metadata": True, "lat": 31.5, "zipcode": None, "name": "占道\x00经营",
              "attributes": [{"code": "a", "values": [{"key": "k", "name": "n"}]}]}
    xml, xml_type = render("xml", "services", "service", [record])
    body, json_type = render("json", "services", "service", [record])
    assert xml_type.startswith("text/xml") and json_type == "application/json"
    parsed = xmltodict.parse(xml)["services"]["service"]
    assert parsed["metadata"] == "true" and parsed["zipcode"] is None and parsed["lat"] == "31.5"
    assert parsed["name"] == "占道经营"  # a NUL cannot be carried by XML: dropped there
    assert parsed["attributes"]["attribute"]["values"]["value"]["key"] == "k"  # plural lists, singular items
    assert json.loads(body)[0]["name"] == "占道\x00经营"
    errors, _ = error_document("xml", 403, "api_key: required")
    assert xmltodict.parse(errors) == {"errors": {"error": {"code": "403", "description": "api_key: required"}}}


def _encoded(street_dir: Path, fmt: str, *, size: tuple[int, int] = (320, 240), exif: bool = False) -> bytes:
    image = Image.open(street_dir / "kerb_parked_cars_street.jpg").convert("RGB").resize(size)
    out = io.BytesIO()
    if exif:
        tags = Image.Exif()
        tags[0x010F] = "PhoneMaker"  # Make
        tags[0x013B] = "Zhang San"  # Artist
        image.save(out, format=fmt, exif=tags)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def test_a_photo_is_re_encoded_without_its_metadata(street_dir: Path) -> None:
    original = _encoded(street_dir, "JPEG", exif=True)
    assert Image.open(io.BytesIO(original)).getexif()[0x013B] == "Zhang San"
    cleaned = photo_as_jpeg(original, max_bytes=1 << 20, max_pixels=10**6)
    stored = Image.open(io.BytesIO(cleaned))
    assert stored.format == "JPEG" and stored.size == (320, 240) and not stored.getexif()
    png = photo_as_jpeg(_encoded(street_dir, "PNG"), max_bytes=1 << 20, max_pixels=10**6)
    assert Image.open(io.BytesIO(png)).format == "JPEG"


@pytest.mark.parametrize(
    ("make", "limit_pixels", "says"),
    [
        (lambda d: b"", 10**6, "empty"),
        (lambda d: b"GIF89a" + b"\x00" * 100, 10**6, "JPEG or PNG"),
        (lambda d: _encoded(d, "GIF"), 10**6, "JPEG or PNG"),  # a real image, but not an accepted format
        (lambda d: _encoded(d, "JPEG")[:3000], 10**6, "cannot be decoded"),
        (lambda d: _encoded(d, "PNG", size=(1200, 1000)), 10**6, "1200x1000 pixels"),
        (lambda d: b"\xff\xd8" + b"\x00" * 3_000_000, 10**6, "bytes"),
    ],
)
def test_a_photo_that_is_not_a_whole_jpeg_or_png_is_refused(  # type: ignore[no-untyped-def]
    street_dir: Path, make, limit_pixels: int, says: str
) -> None:
    with pytest.raises(PhotoError) as refused:
        photo_as_jpeg(make(street_dir), max_bytes=2_000_000, max_pixels=limit_pixels)
    assert says in str(refused.value) and str(refused.value).startswith("media:")


def test_open311_keys_from_the_command_line(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--database-url", db_url, "open311-key", "create", "city 311 app"]) == 0
    created = capsys.readouterr().out
    assert created.startswith("open311 client 1 (city 311 app): o311_")
    assert cli_main(["--database-url", db_url, "open311-key", "list"]) == 0
    listed = capsys.readouterr().out
    assert "\tcity 311 app\t" in listed and listed.rstrip().endswith("active")
    assert cli_main(["--database-url", db_url, "open311-key", "revoke", "1"]) == 0
    assert cli_main(["--database-url", db_url, "open311-key", "revoke", "1"]) == 1
    assert "already revoked" in capsys.readouterr().err
    assert cli_main(["--database-url", db_url, "open311-key", "revoke", "one"]) == 1
    assert "expected the client's id" in capsys.readouterr().err
    assert cli_main(["--database-url", db_url, "open311-key", "create"]) == 1
    assert "name:" in capsys.readouterr().err
    assert cli_main(["--database-url", db_url, "export-reporters"]) == 0
    assert capsys.readouterr().out.startswith("reporter,email,phone,")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "http://", "https://a b/", "ftp://x/", "http://h/?q=1"])
def test_the_public_base_url_must_be_a_plain_http_url(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Open311Settings(base_url=url)
    assert "base_url" in str(refused.value)


def test_links_start_with_the_configured_base_url() -> None:
    assert Open311Settings(base_url="https://311.city.example").public_base(WebSettings(host="0.0.0.0", port=8000)) == (
        "https://311.city.example/"
    )
    assert Open311Settings().public_base(WebSettings(host="127.0.0.1", port=8000)) == "http://127.0.0.1:8000/"
    public = WebSettings(public_url="https://desk.city.example/311")  # type: ignore[arg-type]
    assert Open311Settings().public_base(public) == "https://desk.city.example/311/"  # the web's address by default
