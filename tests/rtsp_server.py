"""A real RTSP server on loopback for tests: GStreamer's gst-rtsp-server serving one MP4 file.

Two halves in one file:
- run as a script with /usr/bin/python3 (Debian's `gi` binds only to the system interpreter):
  ``/usr/bin/python3 tests/rtsp_server.py FILE.mp4 --mount /cam --port 0`` serves FILE (H.264 in
  MP4) at rtsp://127.0.0.1:PORT/cam and prints the bound PORT on stdout, then runs until SIGTERM.
  The stream ends at the end of the file (it does not loop): give a long enough clip
  (clips.long_clip makes one).
  With ``--user NAME`` it requires RTSP basic authentication; the password comes from the
  environment variable RTSP_SERVER_PASSWORD (never the command line).
- imported by tests (stdlib only at import time): ``RtspServer(path, mount)``, a context manager
  that starts that subprocess, reads the port and offers ``url``, ``stop()``, ``restart()``
  (same port, so a client can reconnect to the same URL) and ``freeze()`` / ``thaw()`` (SIGSTOP /
  SIGCONT: a camera that hangs without closing the connection).

Debian packages: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

SYSTEM_PYTHON = "/usr/bin/python3"
PASSWORD_ENV = "RTSP_SERVER_PASSWORD"
_START_TIMEOUT_S = 15.0


class RtspServer:
    """A gst-rtsp-server subprocess serving `path` at rtsp://127.0.0.1:PORT{mount}."""

    def __init__(
        self, path: str | Path, mount: str = "/cam", *, port: int = 0, credentials: tuple[str, str] | None = None
    ) -> None:
        """credentials: (user, password) the server demands (RTSP basic auth); None: open."""
        if not mount.startswith("/"):
            raise ValueError(f"mount: expected a path starting with '/', got {mount!r}")
        self.path = Path(path)
        self.mount = mount
        self.port = port
        self.credentials = credentials
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("RtspServer: not started yet, the port is unknown")
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RtspServer:
        """Start the server (on the port it had before, if any) and wait until it listens."""
        if self.running:
            return self
        command = [SYSTEM_PYTHON, __file__, str(self.path), "--mount", self.mount, "--port", str(self.port)]
        env = None
        if self.credentials is not None:
            command += ["--user", self.credentials[0]]
            env = {**os.environ, PASSWORD_ENV: self.credentials[1]}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._process = process
        self.port = self._read_port(process)
        return self

    def _read_port(self, process: subprocess.Popen[str]) -> int:
        assert process.stdout is not None
        line = process.stdout.readline()  # the server prints the port once it is listening
        if not line.strip().isdigit():
            process.kill()
            _, err = process.communicate(timeout=_START_TIMEOUT_S)
            raise RuntimeError(f"RTSP server for {self.path} did not start: {line!r} {err[-2000:]}")
        return int(line)

    def stop(self, *, kill: bool = True) -> None:
        """End the server: SIGKILL by default (a crash as a camera would have), else SIGTERM."""
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()  # also ends a frozen (SIGSTOPped) server
        else:
            process.terminate()
        process.communicate(timeout=_START_TIMEOUT_S)

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing is sent or answered (a hung camera)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"RTSP server for {self.path} is not running")
        self._process.send_signal(signum)

    def restart(self, *, down_s: float = 0.0) -> RtspServer:
        """Kill the server, stay down for `down_s` seconds, start it again on the same port."""
        self.stop()
        if down_s:
            time.sleep(down_s)
        return self.start()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _require_login(server: object, factory: object, user: str, password: str) -> None:
    """Basic authentication: only `user` with `password` may open (construct/access) the media."""
    from gi.repository import Gst, GstRtspServer

    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)  # type: ignore[attr-defined]
    factory.add_role_from_structure(  # type: ignore[attr-defined]
        Gst.Structure.new_from_string(
            "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )


def _serve(path: Path, mount: str, port: int, user: str | None = None) -> None:
    """Run a gst-rtsp-server for one file until SIGTERM/SIGINT (system interpreter only)."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    # config-interval=1 resends SPS/PPS every second so a client joining late can decode.
    location = str(path).replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux ! h264parse '
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    if user is not None:
        _require_login(server, factory, user, os.environ[PASSWORD_ENV])
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(server.get_bound_port(), flush=True)
    loop.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one H.264 MP4 file over RTSP on 127.0.0.1.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--user", help=f"require this user, with the password in ${PASSWORD_ENV}")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        raise SystemExit(f"{args.file}: no such file")
    _serve(args.file.resolve(), args.mount, args.port, args.user)


if __name__ == "__main__":
    main()
