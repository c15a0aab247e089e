"""The shipped systemd units load: systemd's own verifier reads each one (directives, sandboxing
options, credentials), with ExecStart pointed at this venv's real `edge` / `central`. The images'
Dockerfiles install the extras their configurations need (read statically: building an image takes
minutes; scripts/compose_check.sh builds and runs them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_unit_passes_systemd_analyze_verify_with_restart_and_hardening(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (Debian package systemd)")
    text = (UNITS / unit).read_text()
    for directive in ("Restart=always", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                      "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "LoadCredential="):
        assert directive in text, (unit, directive)
    copy = tmp_path / unit
    copy.write_text(text.replace("/opt/streetwatch/bin/", f"{BIN}/"))
    result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


DOCKER = UNITS.parent / "docker"
REPO = UNITS.parents[1]


def image_extras(dockerfile: Path) -> set[str]:
    """The extras a Dockerfile installs the wheel with (`"streetwatch[a,b]"`)."""
    found = re.findall(r'"streetwatch\[([a-z0-9_,-]+)\]"', dockerfile.read_text())
    assert len(found) == 1, f"{dockerfile.name}: expected one streetwatch[...] install, found {found}"
    return set(found[0].split(","))


def extras_providing(package: str) -> set[str]:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {name for name, requirements in extras.items() if name != "all"
            and any(re.match(rf"{re.escape(package)}\b", r) for r in requirements)}


def test_the_central_image_can_run_on_a_jetstream_cluster() -> None:
    """`broker.kind: jetstream` imports nats (and the accounts script bcrypt): the central image
    installs the extra that brings them, and its build stops if the JetStream consumer does not import."""
    central = DOCKER / "central.Dockerfile"
    for package in ("nats-py", "bcrypt"):
        assert extras_providing(package) & image_extras(central), f"{package}: no extra of the image brings it"
    assert "import bcrypt, streetwatch.central.consumer_jetstream" in central.read_text()


def test_the_offline_image_build_collects_wheels_for_every_extra_the_images_install() -> None:
    """scripts/build_images.sh installs with --no-index: an extra whose wheels it did not collect
    fails the image build."""
    collected = re.search(r'extras="([a-z0-9_,-]+)"', (REPO / "scripts" / "build_images.sh").read_text())
    assert collected is not None
    for dockerfile in ("central.Dockerfile", "edge.Dockerfile"):
        assert image_extras(DOCKER / dockerfile) <= set(collected.group(1).split(",")), dockerfile
