"""Model manifest loading, sha256-checked model resolution and scripts/fetch_models.py.

Uses the real manifest and the real YOLOX-Nano file from the shared assets (via `model_dir`);
corrupted or missing files are made in tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import streetwatch.edge.manifest as manifest_module
from streetwatch.edge.manifest import (
    DEFAULT_MANIFEST,
    MODEL_DIR_ENV,
    ManifestError,
    ModelError,
    load_manifest,
    resolve_model,
)

REPO = Path(__file__).resolve().parents[2]
REAL_SHA = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"


def real_manifest_data() -> dict:
    return yaml.safe_load(DEFAULT_MANIFEST.read_text(encoding="utf-8"))


def write_manifest(folder: Path, **changes: object) -> Path:
    """The real manifest with its single entry's fields replaced (None removes a field)."""
    data = real_manifest_data()
    entry = data["models"][0]
    for key, value in changes.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_real_manifest_describes_yolox_nano() -> None:
    entry = load_manifest().entry("yolox_nano")
    assert entry.format == "yolox"
    assert entry.input_size == (416, 416)
    assert len(entry.classes) == 80 and entry.classes[2] == "car"
    assert entry.role_of("car") == "vehicle"
    assert entry.role_of("person") == "person"
    assert entry.role_of("umbrella") == "vending_prop"
    assert entry.role_of("bicycle") == "ignore"


@pytest.mark.parametrize(
    ("changes", "field_in_message"),
    [
        ({"roles": {"car": "parking_violator"}}, "field roles.car"),
        ({"roles": {"stall": "vending_prop"}}, "field roles"),
        ({"format": "detectron"}, "field format"),
        ({"sha256": "abc123"}, "field sha256"),
        ({"input_size": [416]}, "field input_size"),
        ({"input_size": [8, 8]}, "field input_size"),
        ({"file": "../elsewhere/yolox_nano.onnx"}, "field file"),
        ({"source": "ftp://example.org/x.onnx"}, "field source"),
        ({"licence": "typo of license"}, "field licence"),
        ({"classes": None}, "field classes"),
    ],
)
def test_bad_manifest_names_file_model_and_field(
    tmp_path: Path, changes: dict, field_in_message: str
) -> None:
    path = write_manifest(tmp_path, **changes)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert str(path) in message
    assert "model 'yolox_nano'" in message
    assert field_in_message in message


def test_unknown_role_message_says_what_arrived(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, roles={"car": "parking_violator"})
    with pytest.raises(ManifestError, match="parking_violator") as caught:
        load_manifest(path)
    assert "'vehicle'" in str(caught.value)  # lists what is expected


def test_duplicate_model_names_rejected(tmp_path: Path) -> None:
    data = real_manifest_data()
    data["models"].append(dict(data["models"][0]))
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ManifestError, match="more than once"):
        load_manifest(path)


def test_unreadable_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="missing.yaml"):
        load_manifest(tmp_path / "missing.yaml")


def test_resolve_finds_and_verifies_the_real_model(model_dir: Path) -> None:
    resolved = resolve_model("yolox_nano", model_dir=model_dir)
    assert resolved.path == model_dir / "yolox_nano.onnx"
    assert resolved.ref.name == "yolox_nano" and resolved.ref.sha256 == REAL_SHA


def test_resolve_uses_env_folder_when_no_argument(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    assert resolve_model("yolox_nano").path == model_dir / "yolox_nano.onnx"


def test_explicit_folder_wins_over_env(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(model_dir / "yolox_nano.onnx", tmp_path / "yolox_nano.onnx")
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    assert resolve_model("yolox_nano", model_dir=tmp_path).path == tmp_path / "yolox_nano.onnx"


def test_missing_file_error_names_model_paths_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    (tmp_path / "repo_models").mkdir()  # a checkout's models/ folder, searched where it exists
    monkeypatch.setattr(
        manifest_module, "REPO_MODELS_DIR", tmp_path / "repo_models"
    )  # may hold a fetched copy
    with pytest.raises(ModelError) as caught:
        resolve_model("yolox_nano", model_dir=tmp_path)
    message = str(caught.value)
    assert "'yolox_nano'" in message
    assert str(tmp_path / "yolox_nano.onnx") in message
    assert str(tmp_path / "repo_models" / "yolox_nano.onnx") in message
    assert "fetch_models.py" in message and MODEL_DIR_ENV in message


def corrupt_copy(model_dir: Path, folder: Path) -> Path:
    """A copy of the real model with one byte changed, same size (a bad download)."""
    target = folder / "yolox_nano.onnx"
    data = bytearray((model_dir / "yolox_nano.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def test_wrong_sha_error_names_model_path_and_both_hashes(model_dir: Path, tmp_path: Path) -> None:
    path = corrupt_copy(model_dir, tmp_path)
    with pytest.raises(ModelError) as caught:
        resolve_model("yolox_nano", model_dir=tmp_path)
    message = str(caught.value)
    assert "'yolox_nano'" in message and str(path) in message
    assert f"expected {REAL_SHA}" in message
    assert "got " in message and "fetch_models.py" in message


def test_file_changed_after_a_good_check_is_caught(model_dir: Path, tmp_path: Path) -> None:
    """The sha cache must not hide a file replaced in place with one of the same size."""
    good = tmp_path / "yolox_nano.onnx"
    shutil.copy(model_dir / "yolox_nano.onnx", good)
    resolve_model("yolox_nano", model_dir=tmp_path)
    stat = good.stat()
    corrupt_copy(model_dir, tmp_path)
    os.utime(good, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ModelError, match="wrong sha256"):
        resolve_model("yolox_nano", model_dir=tmp_path)


def test_unknown_model_name_lists_known_ones(model_dir: Path) -> None:
    with pytest.raises(ModelError, match="known models: yolox_nano"):
        resolve_model("yolo_mega", model_dir=model_dir)


# --- scripts/fetch_models.py -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fetch_models() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_models", REPO / "scripts" / "fetch_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def served_copy(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the real model standing in for the public release (file:// URL)."""
    served = tmp_path / "upstream"
    served.mkdir()
    shutil.copy(model_dir / "yolox_nano.onnx", served / "yolox_nano.onnx")
    return served / "yolox_nano.onnx"


def test_fetch_downloads_verifies_and_then_skips(
    fetch_models: ModuleType, served_copy: Path, tmp_path: Path
) -> None:
    entry = load_manifest(write_manifest(tmp_path, source=served_copy.as_uri())).entry("yolox_nano")
    target_dir = tmp_path / "models"
    assert fetch_models.fetch_model(entry, target_dir) == "downloaded"
    assert resolve_model("yolox_nano", manifest_path=tmp_path / "manifest.yaml", model_dir=target_dir)
    assert fetch_models.fetch_model(entry, target_dir) == "present"
    assert sorted(p.name for p in target_dir.iterdir()) == ["yolox_nano.onnx"]  # no temp left


def test_fetch_replaces_a_corrupt_file(
    fetch_models: ModuleType, served_copy: Path, model_dir: Path, tmp_path: Path
) -> None:
    target_dir = tmp_path / "models"
    target_dir.mkdir()
    corrupt_copy(model_dir, target_dir)
    entry = load_manifest(write_manifest(tmp_path, source=served_copy.as_uri())).entry("yolox_nano")
    assert fetch_models.fetch_model(entry, target_dir) == "downloaded"
    resolve_model("yolox_nano", manifest_path=tmp_path / "manifest.yaml", model_dir=target_dir)


def test_fetch_refuses_a_download_with_the_wrong_hash(
    fetch_models: ModuleType, served_copy: Path, model_dir: Path, tmp_path: Path
) -> None:
    corrupt_copy(model_dir, served_copy.parent)  # upstream now serves different bytes
    entry = load_manifest(write_manifest(tmp_path, source=served_copy.as_uri())).entry("yolox_nano")
    target_dir = tmp_path / "models"
    with pytest.raises(fetch_models.FetchError, match=f"manifest expects {REAL_SHA}"):
        fetch_models.fetch_model(entry, target_dir)
    assert list(target_dir.iterdir()) == []  # neither the bad file nor a temp file is left


def test_fetch_cli_reports_unreachable_source(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, source=(tmp_path / "nowhere" / "yolox_nano.onnx").as_uri())
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "fetch_models.py"),
            "--manifest",
            str(manifest),
            "--model-dir",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert "cannot download" in run.stderr and "offline" in run.stderr
    assert not (tmp_path / "models" / "yolox_nano.onnx").exists()


def test_fetch_cli_downloads_with_progress(served_copy: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, source=served_copy.as_uri())
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "fetch_models.py"),
            "--manifest",
            str(manifest),
            "--model-dir",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "yolox_nano: downloaded" in run.stdout and "MB" in run.stderr
    assert (tmp_path / "models" / "yolox_nano.onnx").stat().st_size == served_copy.stat().st_size
