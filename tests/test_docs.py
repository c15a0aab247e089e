"""Every command in the documentation runs as written, and every link points at something.

What is checked, in README.md and docs/*.md (markers: tests/markdown_docs.py):

- **Runnable blocks** (`<!-- runnable -->`) run as one bash script with `set -euo pipefail` and must
  exit 0. **Serve blocks** (`<!-- runnable: serve URL -->`: `edge run`, `central serve`,
  `central demo`) are started in a process group of their own; the program must answer URL with 200
  (and the marker's text, e.g. a metric that exists only once the broker acknowledged an alert), and
  the group must be gone soon after SIGTERM, with no traceback in its output. Blocks run in reading
  order (DOCS), in one folder for the session, the way a reader follows the guides: the central
  guide ingests the alerts that the operator guide's replay wrote. The folder holds links to the
  checkout's configs/, models/ and scripts/ and nothing else. The database is SQLite under var/ (the
  default), and the footage and the model are the shared assets.
- The ports the docs name are swapped for ones the test owns, so a block never reaches a shared
  broker or a port in use: 1883 becomes an embedded broker started for each document, and 8000 (the
  web) and 9108 (metrics) become free ports. The environment has no STREETWATCH_* variable but the
  asset folders and, as a guard, the test broker (STREETWATCH_MQTT_URL, protocol 3.1.1) and the web
  port (STREETWATCH_WEB__PORT). A settings file's broker or port is therefore never used.
- **Every command line** in every shell block, and every `$ ` line in other blocks, runnable or not:
  `edge` and `central` sub-commands and `python scripts/*.py` must exist, each flag must be in the
  program's `--help`, and a script path must be an executable file. So a documented command or flag
  that does not exist fails here even where the command itself cannot run in a test (retraining,
  benchmarks, the soak).
- **Links**: every relative link points at an existing file, and its `#anchor` at a heading there.
- The wire examples in docs/mqtt.md validate against the schema, and the guides name every setting.

The two set-up commands at the top of the README are checked to exist and to be executable. They
are not run: `scripts/test.sh` runs this suite, and `scripts/demo.sh` installs into the checkout
first. The `central demo` they end in is started and stopped from the README's tour.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from markdown_docs import Block, anchors, command_lines, fenced_blocks, relative_links, simple_commands
from pydantic import BaseModel
from support import free_port

REPO = Path(__file__).resolve().parent.parent
DOCS = ["docs/operator-guide.md", "docs/central-guide.md", "docs/mqtt.md", "docs/security.md",
        "docs/model-engineer-guide.md", "README.md"]  # reading order: later guides use earlier files
ALL_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_ORDER = [REPO / d for d in DOCS] + [d for d in ALL_DOCS if d.relative_to(REPO).as_posix() not in DOCS]
BLOCK_TIMEOUT_S = 240
SERVE_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60
DOC_PORTS = {"web": 8000, "metrics": 9108}
DOC_BROKER_PORT = 1883
WORKSPACE_LINKS = ("configs", "models", "scripts")
# Global options that take a value, before the sub-command.
VALUED_GLOBALS = {"central": {"--config", "--database-url"}, "edge": set()}

BLOCKS = [b for doc in RUN_ORDER for b in fenced_blocks(doc)]
RUNNABLE = [b for b in BLOCKS if b.runnable]


# ---------------------------------------------------------------- commands against their --help


def clean_environment() -> dict[str, str]:
    """This process's environment without any STREETWATCH_* variable, this venv's programs first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def swap_ports(text: str, ports: dict[int, int]) -> str:
    """`text` with each port number the docs use (a key of `ports`) replaced by the test's own."""
    pattern = r"(?<!\d)(" + "|".join(map(str, ports)) + r")(?!\d)"
    return re.sub(pattern, lambda m: str(ports[int(m[1])]), text)


@functools.cache
def program_help(argv: tuple[str, ...]) -> tuple[int, str]:
    """Exit status and output of `argv --help`, run from the checkout with no STREETWATCH_* set."""
    proc = subprocess.run([*argv, "--help"], cwd=REPO, env=clean_environment(), capture_output=True, text=True,
                          timeout=180)
    return proc.returncode, proc.stdout + proc.stderr


def _flags(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if re.match(r"^--?[A-Za-z][\w-]*(=.*)?$", w)]


def _subcommand(program: str, words: list[str]) -> tuple[str | None, list[str]]:
    """The sub-command after `program`'s global options, and the words after the program."""
    rest, index = words[1:], 0
    while index < len(rest) and rest[index].startswith("-"):
        index += 2 if rest[index] in VALUED_GLOBALS[program] else 1
    return (rest[index] if index < len(rest) else None), rest


CHECKOUT_PATHS = ("configs/", "scripts/", "tests/", "models/", "docs/")


def command_problems(words: list[str]) -> list[str]:
    """Why a documented simple command would not run as written ([] when it would, or when its
    program is not one of the project's): a path into the checkout that is not there, a program,
    sub-command or flag that does not exist."""
    missing = [f"{w}: no such file" for w in words if w.startswith(CHECKOUT_PATHS) and not (REPO / w).exists()]
    return missing + _program_problems(words)


def _program_problems(words: list[str]) -> list[str]:
    program = words[0]
    if program in ("edge", "central"):
        sub, rest = _subcommand(program, words)
        argv: tuple[str, ...] = (program, sub) if sub else (program,)
    elif program in ("python", "python3") and len(words) > 1 and words[1].startswith("scripts/"):
        argv, rest = (sys.executable, words[1]), words[2:]
        if not (REPO / words[1]).is_file():
            return [f"{words[1]}: no such script"]
    elif program.startswith(("scripts/", "configs/")):
        path = REPO / program
        return [] if path.is_file() and os.access(path, os.X_OK) else [f"{program}: not an executable file"]
    else:
        return []
    status, text = program_help(argv)
    if status != 0:
        return [f"`{' '.join(words[:2])} --help` exited {status}: {text.strip().splitlines()[-1:]}"]
    return [f"{' '.join(argv[-2:])}: no option {flag}" for flag in _flags(rest)
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)]


COMMANDS = [(b, c) for b in BLOCKS for c in command_lines(b)]


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=[f"{b.where}:{c[:40]}" for b, c in COMMANDS])
def test_every_documented_command_and_flag_exists(block: Block, command: str) -> None:
    problems = [p for words in simple_commands(command) for p in command_problems(words)]
    assert not problems, f"{block.where}: `{command}`: " + "; ".join(problems)


@pytest.mark.parametrize(
    "command",
    ["central serve --no-such-flag", "central frobnicate --config x.yaml", "edge replay v.mp4 --camra c",
     "python scripts/train.py --epoch 3", "python scripts/no_such.py", "scripts/no_such.sh",
     "central import-merchants configs/no_such.geojson"],
)
def test_the_command_check_refuses_what_does_not_exist(command: str) -> None:
    """The check above would catch a renamed flag, a missing sub-command or script."""
    assert [p for words in simple_commands(command) for p in command_problems(words)]


# ---------------------------------------------------------------- links


LINKS = [(doc, target) for doc in ALL_DOCS for target in relative_links(doc)]


@pytest.mark.parametrize(("doc", "target"), LINKS, ids=[f"{d.name}->{t}" for d, t in LINKS])
def test_every_relative_link_points_at_a_file_and_heading(doc: Path, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    path = (doc.parent / path_part).resolve() if path_part else doc
    assert path.exists(), f"{doc.name}: link {target}: {path} does not exist"
    if anchor:
        assert path.suffix == ".md", f"{doc.name}: link {target}: an anchor into a file that is not Markdown"
        assert anchor in anchors(path), f"{doc.name}: link {target}: no heading #{anchor} in {path.name}"


def test_the_documents_link_to_each_other() -> None:
    """Every guide is reachable from the README."""
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(REPO / "README.md")}
    assert set((REPO / "docs").glob("*.md")) <= linked


# ---------------------------------------------------------------- the README


def test_the_readme_is_short_and_opens_with_the_two_setup_commands() -> None:
    readme = REPO / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) < 150
    first = fenced_blocks(readme)[0]
    assert [line.split()[0] for line in first.text.splitlines()] == ["scripts/demo.sh", "scripts/test.sh"]
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert os.access(REPO / script, os.X_OK), script
    # The tour starts `central demo`; the demo script is set-up plus exactly that.
    assert (REPO / "scripts/demo.sh").read_text().rstrip().endswith('exec central demo "$@"')
    assert any(b.doc.name == "README.md" and b.text.strip() == "central demo" for b in RUNNABLE)


# ---------------------------------------------------------------- the contract's examples


def test_the_wire_examples_in_the_contract_validate() -> None:
    from streetwatch.edge.alerts import MediaChunk, ResendCommand, ResendReply, parse_alert
    from streetwatch.edge.publisher import Numbering, status_payload

    examples = {b.schema: b.text for b in fenced_blocks(REPO / "docs/mqtt.md") if b.schema}
    assert set(examples) == {"streetwatch.alert/1", "streetwatch.status/1", "streetwatch.command/1",
                             "streetwatch.reply/1", "streetwatch.media/1"}
    alert = json.loads(examples["streetwatch.alert/1"])
    observed = datetime.fromisoformat(alert["observed_at"].replace("Z", "+00:00"))
    parsed = parse_alert(examples["streetwatch.alert/1"], received_at=observed + timedelta(seconds=1))
    assert parsed.model_dump(by_alias=True, exclude_none=True, mode="json").keys() == alert.keys()
    ResendCommand.model_validate_json(examples["streetwatch.command/1"])
    ResendReply.model_validate_json(examples["streetwatch.reply/1"])
    MediaChunk.model_validate_json(examples["streetwatch.media/1"])
    status = json.loads(examples["streetwatch.status/1"])
    made = json.loads(status_payload("box-01", "online", numbering=Numbering("ob-x", 17)))
    assert status.keys() == made.keys()


# ---------------------------------------------------------------- settings named in the guides


def _leaf_settings(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_settings(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_the_central_guide_lists_every_setting() -> None:
    from streetwatch.central.config import CentralSettings

    guide = (REPO / "docs/central-guide.md").read_text(encoding="utf-8")
    missing = [s for s in _leaf_settings(CentralSettings) if f"`{s}`" not in guide]
    assert not missing, f"docs/central-guide.md does not name {missing}"


def test_the_operator_guide_lists_every_box_camera_and_zone_key() -> None:
    from streetwatch.edge.config import CameraConfig, EdgeConfig, ZoneConfig

    guide = (REPO / "docs/operator-guide.md").read_text(encoding="utf-8")
    keys = [*EdgeConfig.model_fields, *CameraConfig.model_fields, *ZoneConfig.model_fields]
    missing = [k for k in keys if f"`{k}`" not in guide]
    assert not missing, f"docs/operator-guide.md does not name {missing}"


# ---------------------------------------------------------------- running the runnable blocks


@dataclass
class Workspace:
    """The reader's folder, the ports the docs' ones stand for, and one broker per document."""

    root: Path
    ports: dict[int, int]
    env: dict[str, str]
    brokers: dict[Path, tuple[int, object]]

    def broker_port(self, doc: Path) -> int:
        if doc not in self.brokers:
            from streetwatch.embedded_broker import start_embedded_broker

            port = free_port()
            self.brokers[doc] = (port, start_embedded_broker(port))
        return self.brokers[doc][0]

    def script(self, block: Block) -> tuple[str, dict[str, str]]:
        """The block's text with the docs' ports swapped for the test's, and its environment."""
        ports = {**self.ports, DOC_BROKER_PORT: self.broker_port(block.doc)}
        env = {**self.env, "STREETWATCH_MQTT_URL": f"mqtt://127.0.0.1:{ports[DOC_BROKER_PORT]}"}
        return "set -euo pipefail\n" + swap_ports(block.text, ports), env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, assets_dir: Path, model_dir: Path) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("reader")
    for name in WORKSPACE_LINKS:
        (root / name).symlink_to(REPO / name)
    ports = {doc_port: free_port() for doc_port in DOC_PORTS.values()}
    env = clean_environment()
    env.update({
        "STREETWATCH_ASSETS_DIR": str(assets_dir),
        "STREETWATCH_MODEL_DIR": str(model_dir),
        "STREETWATCH_MQTT_PROTOCOL": "3.1.1",
        "STREETWATCH_WEB__PORT": str(ports[DOC_PORTS["web"]]),
    })
    space = Workspace(root, ports, env, {})
    try:
        yield space
    finally:
        for _, broker in space.brokers.values():
            broker.stop()  # type: ignore[attr-defined]


def test_the_guides_quick_starts_are_runnable() -> None:
    for doc in ("operator-guide.md", "central-guide.md"):
        assert any(b.doc.name == doc for b in RUNNABLE), f"docs/{doc} has no runnable block"


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_the_runnable_blocks_run_as_written(block: Block, workspace: Workspace) -> None:
    script, env = workspace.script(block)
    if block.serve_url is None:
        proc = subprocess.run(["bash", "-c", script], cwd=workspace.root, env=env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT_S)
        assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{_tail(proc.stdout + proc.stderr)}"
        return
    _serve_and_stop(block, script, env, url=swap_ports(block.serve_url, workspace.ports), cwd=workspace.root)


def _serve_and_stop(block: Block, script: str, env: dict[str, str], *, url: str, cwd: Path) -> None:
    """Start the block, wait for `url` to answer (with the marker's text), then SIGTERM its group."""
    log_path = cwd / f"serve-{block.doc.stem}-{block.line}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        ready = _wait_until_answered(url, proc, text=block.serve_text, timeout_s=SERVE_TIMEOUT_S)
        assert ready, (f"{block.where}: {url} did not answer {block.serve_text!r}:\n"
                       f"{_tail(log_path.read_text(errors='replace'))}")
    finally:
        stopped = _stop_group(proc, timeout_s=STOP_TIMEOUT_S)
    output = log_path.read_text(errors="replace")
    assert stopped, f"{block.where}: still running {STOP_TIMEOUT_S} s after SIGTERM:\n{_tail(output)}"
    assert "Traceback" not in output, f"{block.where}:\n{_tail(output)}"


def _wait_until_answered(url: str, proc: subprocess.Popen[bytes], *, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and text in response.read().decode(errors="replace"):
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def _stop_group(proc: subprocess.Popen[bytes], *, timeout_s: float) -> bool:
    """SIGTERM the block's process group; True once no live (non-zombie) member is left, else
    SIGKILL it and False."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    proc.wait(timeout_s)
    while time.monotonic() < deadline:
        if not _live_members(proc.pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return False


def _live_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
