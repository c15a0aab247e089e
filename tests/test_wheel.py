"""The built wheel works alone: installed in a fresh venv outside the checkout, with no repository
beside it, `edge` and `central` find everything they load at run time (manifest, migrations,
templates, static files, translations) in the package, and the models in $STREETWATCH_MODEL_DIR.

Built with `python -m build --wheel` as a release would; installed with `pip install
'streetwatch-*.whl[edge,central]'` (the production extras: no embedded broker). Real parts: the
real detector on the shared lot clip, a real Mosquitto, SQLite, the web queue over HTTP.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from fault_harness import Mosquitto, wait_for
from support import free_port

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "streetwatch"
# Real footage: about 8 cars parked for the whole 75 s while traffic passes (video/SOURCES.md).
STREET_CLIP = "video/cvtrafficcam_street_parking.mp4"

pytestmark = pytest.mark.slow
WEB_LIBS = ("leaflet.js", "leaflet.css", "leaflet.markercluster.js", "leaflet-heat.js", "chart.umd.js")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    home: Path  # the working folder of every command: no repository in it or above it

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "LANG", "LC_")) or k in ("HOME", "TMPDIR")}
        return {**keep, "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", **extra}

    def run(self, *command: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / command[0]), *command[1:]], cwd=self.home, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, *command: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen([str(self.venv / "bin" / command[0]), *command[1:]], cwd=self.home,
                                    env=self.env(**env), stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("streetwatch-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[edge,central]"],
                         capture_output=True, text=True, timeout=900, check=False, cwd=root)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    home = root / "box"
    home.mkdir()
    return Installed(wheel=wheel, venv=venv, home=home)


def test_every_file_under_the_package_is_in_the_wheel(installed: Installed) -> None:
    """Templates, static files, translations, migrations, the manifest, example configs: whatever
    lies under streetwatch/ (a neighbour's new catalogue too) is in the wheel, so nothing the code
    loads at run time can be left behind."""
    on_disk = {
        path.relative_to(REPO).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    in_wheel = set(zipfile.ZipFile(installed.wheel).namelist())
    assert on_disk - in_wheel == set()
    assert {"streetwatch/models/manifest.yaml", "streetwatch/central/migrations/alembic.ini",
            "streetwatch/configs/edge.example.yaml"} <= in_wheel
    # the map's and charts' libraries: not committed, put there by scripts/web_assets.sh (npm ci)
    assert {f"streetwatch/central/web/static/lib/{name}" for name in WEB_LIBS} <= in_wheel


def test_wheel_metadata_names_the_license_and_keeps_the_embedded_broker_out_of_production(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        metadata = Parser().parsestr(wheel.read("streetwatch-0.1.0.dist-info/METADATA").decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "streetwatch-0.1.0.dist-info/licenses/LICENSE" in names
    iotcore = [r for r in metadata.get_all("Requires-Dist") or [] if r.startswith("iotcore")]
    assert iotcore and all("extra == \"demo\"" in r or "extra == \"dev\"" in r for r in iotcore), iotcore
    check = installed.run("python", "-c", "import importlib.util as u; print(u.find_spec('iotcore') is None)")
    assert check.stdout.strip() == "True"


def test_installed_commands_report_their_version_and_run_from_the_venv(installed: Installed) -> None:
    assert installed.run("edge", "--version").stdout.strip() == "edge (streetwatch) 0.1.0"
    assert installed.run("central", "--version").stdout.strip() == "central (streetwatch) 0.1.0"
    where = installed.run("python", "-c", "import streetwatch; print(streetwatch.__file__)").stdout.strip()
    assert where.startswith(str(installed.venv)), where
    schema = json.loads(installed.run("edge", "config-schema").stdout)
    assert "cameras" in schema["properties"] and "rules" in schema["$defs"]["CameraConfig"]["properties"]


def _street_config(installed: Installed, clip: Path, broker_url: str) -> Path:
    """The parked cars alert after 20 s (the clip is 75 s long; a city's dwell is minutes)."""
    zone = {"id": "z-street", "violations": ["illegal_parking"], "dwell_s": 20,
            "polygon_px": [[0, 0], [640, 0], [640, 360], [0, 360]]}
    camera = {"id": "cam-street", "url": str(clip), "sample_fps": 1, "zones": [zone]}
    config = {"edge_id": "box-wheel", "broker": {"url": broker_url, "protocol": "5"},
              "outbox": "outbox.sqlite", "cameras": [camera]}
    path = installed.home / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture()
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker", free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (what docker stop and systemd send) and the exit status; SIGKILL after 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


# uvicorn ends by re-raising the SIGTERM it handled, the demo exits 128 + SIGTERM after its
# clean-up; systemd and docker count both as a clean stop.
STOPPED = (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def test_replay_then_serve_then_run_from_the_installed_wheel(
    installed: Installed, assets_dir: Path, model_dir: Path, own_broker: Mosquitto, tmp_path: Path
) -> None:
    """edge replay on a shared street clip; central migrate and serve (ingest + web queue); edge run
    on the same clip publishes to the broker and central stores every alert."""
    clip = assets_dir / STREET_CLIP
    config = _street_config(installed, clip, own_broker.url)
    models = {"STREETWATCH_MODEL_DIR": str(model_dir)}
    replay = installed.run("edge", "replay", str(clip), "--config", str(config), "--out", "alerts.jsonl",
                           "--no-progress", **models)
    assert replay.returncode == 0, replay.stderr[-3000:]
    replayed = (installed.home / "alerts.jsonl").read_text().splitlines()
    assert replayed and all(json.loads(line)["camera_id"] == "cam-street" for line in replayed)

    database = f"sqlite:///{installed.home / 'central.sqlite'}"
    assert installed.run("central", "--database-url", database, "migrate").returncode == 0
    port = free_port()
    settings = installed.home / "central.yaml"
    settings.write_text(yaml.safe_dump({"broker": {"url": own_broker.url, "protocol": "5",
                                                   "subscription": "streetwatch/v1/alerts/#"},
                                        "web": {"port": port}, "evidence_dir": "var/evidence"}))
    serve_log = tmp_path / "serve.log"
    serve = installed.start("central", "--database-url", database, "--config", str(settings), "serve", log=serve_log,
                            STREETWATCH_SECRET_KEY=secrets.token_urlsafe(48))
    try:
        wait_for(lambda: b"subscribed" in serve_log.read_bytes() and _listening(port), 60, "central serve",
                 why=lambda: serve_log.read_text(errors="replace")[-2000:])
        status, page = _get(f"http://127.0.0.1:{port}/login")
        assert status == 200 and b"<form" in page  # a template from the wheel
        assert _get(f"http://127.0.0.1:{port}/static/app.css")[0] == 200  # a static file from the wheel
        status, leaflet = _get(f"http://127.0.0.1:{port}/static/lib/leaflet.js")  # an npm library from the wheel
        assert status == 200 and b"Leaflet" in leaflet[:400]
        run = installed.run("edge", "run", "--config", str(config), timeout=300, **models)
        assert run.returncode == 0, run.stderr[-3000:]
        wait_for(lambda: _stored(installed, database) >= len(replayed), 60, "the edge run's alerts in central",
                 why=lambda: f"{_stored(installed, database)} stored; {serve_log.read_text(errors='replace')[-2000:]}")
    finally:
        stopped = _stop(serve)
    assert stopped in STOPPED, serve_log.read_text(errors="replace")[-3000:]


def _listening(port: int) -> bool:
    try:
        return _get(f"http://127.0.0.1:{port}/login")[0] == 200
    except OSError:
        return False


def _stored(installed: Installed, database: str) -> int:
    export = installed.run("central", "--database-url", database, "export-cases", "--format", "json")
    return sum(case["alert_count"] for case in json.loads(export.stdout)) if export.returncode == 0 else -1


def test_central_demo_from_the_wheel_with_a_broker_and_without_the_demo_extra(
    installed: Installed, assets_dir: Path, model_dir: Path, own_broker: Mosquitto, tmp_path: Path
) -> None:
    assets = {"STREETWATCH_ASSETS_DIR": str(assets_dir), "STREETWATCH_MODEL_DIR": str(model_dir)}
    alone = installed.run("central", "demo", "--port", str(free_port()), timeout=60, **assets)
    assert alone.returncode != 0 and "pip install 'streetwatch[demo]'" in alone.stderr + alone.stdout
    port = free_port()
    log = tmp_path / "demo.log"
    demo = installed.start("central", "demo", "--broker-url", own_broker.url, "--port", str(port),
                           "--workdir", str(installed.home / "demo"), log=log, **assets)
    try:
        wait_for(lambda: _listening(port), 120, "the demo's web queue", why=lambda: log.read_text(errors="replace"))
        wait_for(lambda: "opened" in (installed.home / "demo" / "edge.log").read_text(errors="replace"), 60,
                 "the demo's edge worker", why=lambda: (installed.home / "demo" / "edge.log").read_text())
    finally:
        stopped = _stop(demo)
    assert stopped in STOPPED, log.read_text(errors="replace")[-3000:]
