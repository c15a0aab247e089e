"""Adding a trained model to the model manifest (streetwatch/models/manifest.yaml) without losing the model it replaces.

The new entry is appended as text (comments and earlier entries stay byte-for-byte), and the
result is validated with the edge's own `load_manifest` before it replaces the file, so a broken
manifest is never written. Earlier entries stay: rolling back is pointing the edge config's
`model.name` at the previous entry again.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from streetwatch.edge.manifest import Manifest, ModelEntry, file_sha256, load_manifest
from streetwatch.training.classmap import ClassMap

logger = logging.getLogger(__name__)


def make_entry(
    onnx_path: str | Path,
    *,
    name: str,
    class_map: ClassMap,
    input_size: tuple[int, int],
    license_text: str = "AGPL-3.0 (trained with Ultralytics)",
) -> ModelEntry:
    """A validated manifest entry for an exported ultralytics ONNX file (sha256 of the file)."""
    path = Path(onnx_path).resolve()
    return ModelEntry(
        name=name,
        file=path.name,
        sha256=file_sha256(path),
        format="ultralytics",
        input_size=input_size,
        classes=class_map.names,
        roles=class_map.roles,
        license=license_text,
        source=path.as_uri(),
    )


def entry_yaml(entry: ModelEntry) -> str:
    """The entry as a YAML list item, indented like the shipped manifest."""
    data = entry.model_dump(mode="json")
    data["input_size"] = list(entry.input_size)
    body = yaml.safe_dump([data], sort_keys=False, default_flow_style=None, width=200, allow_unicode=True)
    return "".join(f"  {line}\n" for line in body.splitlines())


def add_entry(manifest_path: str | Path, entry: ModelEntry, *, replace: bool = False) -> Manifest:
    """Append `entry` to the manifest; an existing entry of that name is an error unless replace=True."""
    return add_entries(manifest_path, [entry], replace=replace)


def add_entries(manifest_path: str | Path, entries: Sequence[ModelEntry], *, replace: bool = False) -> Manifest:
    """Append `entries` in one write (an FP32 and its INT8 land together or not at all).

    The new text is validated with the edge's loader, then replaces the file atomically (a temporary
    file in the same folder, fsync, rename) with the old file's permission bits: an edge running as
    another user keeps reading it."""
    path = Path(manifest_path)
    current = load_manifest(path)
    text = path.read_text(encoding="utf-8")
    new_names = {e.name for e in entries}
    if any(m.name in new_names for m in current.models):
        if not replace:
            taken = sorted(m.name for m in current.models if m.name in new_names)
            raise ValueError(f"{path}: model(s) {taken} already in the manifest (choose another --name)")
        kept = [m for m in current.models if m.name not in new_names]
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        text = header + "models:\n" + "".join(entry_yaml(m) for m in kept)
    if not text.endswith("\n"):
        text += "\n"
    text += "".join(entry_yaml(e) for e in entries)
    updated = write_atomically(path, text.encode("utf-8"), validate=load_manifest)
    for entry in entries:
        logger.info("manifest %s: added model %s (%s, sha256 %s)", path, entry.name, entry.file, entry.sha256[:12])
    return updated


def write_atomically(path: Path, data: bytes, *, validate: Callable[[Path], Manifest]) -> Manifest:
    """Write `data` beside `path`, validate it, keep `path`'s mode, fsync and rename over `path`."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
        result = validate(Path(tmp))  # the edge's own validation, before the real file changes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return result


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (the folder entry); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def versioned_file_name(name: str, sha256: str) -> str:
    """`NAME-<sha256[:12]>.onnx`: a new export never takes the file name of an earlier one."""
    return f"{name}-{sha256[:12]}.onnx"


def referenced_files(manifest: Manifest) -> dict[str, str]:
    """file name -> sha256 of every manifest entry (the files the edge may load)."""
    return {m.file: m.sha256 for m in manifest.models}


def install_model_file(onnx_path: str | Path, model_dir: str | Path, *, name: str, manifest: Manifest) -> Path:
    """Move a checked export into the model folder as `NAME-<sha12>.onnx`, atomically (copy to a temporary
    file in the folder, fsync, rename). A file a manifest entry points to is never overwritten: the same
    content is kept as it is, a different one under that name is refused."""
    sha = file_sha256(onnx_path)
    folder = Path(model_dir)
    target = folder / versioned_file_name(name, sha)
    expected = referenced_files(manifest).get(target.name)
    if expected is not None and expected != sha:
        raise ValueError(f"{target}: a manifest entry points to this file with sha256 {expected[:12]}; not replaced")
    if target.is_file():
        if file_sha256(target) == sha:
            return target  # the same bytes are already there (a reproducible re-export)
        raise ValueError(f"{target}: exists with other content (sha256 {file_sha256(target)[:12]}); not replaced")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}-", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle, open(onnx_path, "rb") as source:
            shutil.copyfileobj(source, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return target
