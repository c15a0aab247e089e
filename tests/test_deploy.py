"""The shipped systemd units load: systemd's own verifier reads each one (directives, sandboxing
options, credentials), with ExecStart pointed at this venv's real `edge` / `central`."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
