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
import tempfile
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
    path = Path(manifest_path)
    current = load_manifest(path)
    text = path.read_text(encoding="utf-8")
    if any(m.name == entry.name for m in current.models):
        if not replace:
            raise ValueError(f"{path}: model {entry.name!r} is already in the manifest (choose another --name)")
        kept = [m for m in current.models if m.name != entry.name]
        header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
        text = header + "models:\n" + "".join(entry_yaml(m) for m in kept)
    if not text.endswith("\n"):
        text += "\n"
    text += entry_yaml(entry)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        updated = load_manifest(tmp)  # the edge's own validation, before the real file changes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("manifest %s: added model %s (%s, sha256 %s)", path, entry.name, entry.file, entry.sha256[:12])
    return updated


def install_model_file(onnx_path: str | Path, model_dir: str | Path, *, name: str) -> Path:
    """Copy the exported file into the model folder as `<name>.onnx` (where the edge looks for it)."""
    target = Path(model_dir) / f"{name}.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(onnx_path).resolve() != target.resolve():
        shutil.copyfile(onnx_path, target)
    return target
