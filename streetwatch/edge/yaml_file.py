"""Reading the edge's YAML files (config, model manifest) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic_core import ErrorDetails


def read_yaml_mapping(path: Path, error: type[Exception], *, what: str, expected: str) -> dict[str, Any]:
    """The file's top-level mapping; `error` names the file and says what is wrong.

    what: the file's role for "cannot read ..."; expected: what the top level should be.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected {expected}, got {type(raw).__name__}")
    return raw


def shown_input(err: ErrorDetails) -> str:
    """What arrived for a failed field, short: a scalar's repr, a container's type name."""
    got = err.get("input")
    shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    return shown[:80]
