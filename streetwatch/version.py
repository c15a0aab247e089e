"""The installed package's version (from its metadata: pyproject.toml's `version` is the one source)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    """`0.1.0` for an installed wheel or an editable install; `0+unknown` for a bare source tree."""
    try:
        return version("streetwatch")
    except PackageNotFoundError:
        return "0+unknown"
