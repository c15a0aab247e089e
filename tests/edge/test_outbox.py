"""The durable outbox: what the edge promises about alerts between the pipeline and the broker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import make_alert

from streetwatch.edge.alerts import Alert, alert_topic, parse_alert
from streetwatch.edge.outbox import MAX_MISSING_RANGES, Outbox, OutboxError, OutboxFull, missing_ranges


def unnumbered(payload: bytes) -> Alert:
    """The alert a payload carries, without the delivery numbering the outbox adds."""
    return parse_alert(payload).model_copy(update={"seq": None, "outbox_id": None})


@pytest.fixture()
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def test_put_pending_ack_depth_oldest_first(outbox: Outbox) -> None:
    alerts = [make_alert(camera_id=f"cam-{i}") for i in range(3)]
    for alert in alerts:
        outbox.put(alert)

    items = outbox.pending(10)
    assert [i.alert_id for i in items] == [a.alert_id for a in alerts]
    assert [i.topic for i in items] == [alert_topic("box-01", f"cam-{i}") for i in range(3)]
    assert [i.camera_id for i in items] == ["cam-0", "cam-1", "cam-2"]
    assert unnumbered(items[1].payload) == alerts[1]
    assert outbox.depth() == 3
    assert outbox.size_bytes() == sum(len(i.payload) for i in items)

    assert outbox.ack(alerts[1].alert_id) is True
    assert outbox.ack(alerts[1].alert_id) is False  # a repeated PUBACK is harmless
    assert [i.alert_id for i in outbox.pending(10)] == [alerts[0].alert_id, alerts[2].alert_id]
    assert [i.alert_id for i in outbox.pending(1)] == [alerts[0].alert_id]
    assert outbox.depth() == 2


def test_re_put_is_idempotent_and_keeps_the_queue_position(outbox: Outbox) -> None:
    first, second = make_alert(), make_alert()
    outbox.put(first)
    outbox.put(second)
    outbox.put(first)
    assert outbox.depth() == 2
    assert [i.alert_id for i in outbox.pending(10)] == [first.alert_id, second.alert_id]


def test_record_attempt_counts_publishes(outbox: Outbox) -> None:
    alert = make_alert()
    outbox.put(alert)
    outbox.record_attempt(alert.alert_id)
    outbox.record_attempt(alert.alert_id)
    assert outbox.pending(1)[0].attempts == 2


def test_pending_items_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    alerts = [make_alert(), make_alert(state="ended")]
    with Outbox(path) as box:
        for alert in alerts:
            box.put(alert)
        box.ack(alerts[0].alert_id)
    with Outbox(path) as box:
        items = box.pending(10)
    assert [i.alert_id for i in items] == [alerts[1].alert_id]
    assert unnumbered(items[0].payload) == alerts[1]


# The child stores one alert and SIGKILLs itself at once: no close(), no atexit, no flush.
_PUT_THEN_SIGKILL = """
import os, signal, sys
from streetwatch.edge.alerts import Alert
from streetwatch.edge.outbox import Outbox
box = Outbox(sys.argv[1])
box.put(Alert.model_validate_json(sys.stdin.read()))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_put_that_returned_survives_sigkill_of_the_process(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    alert = make_alert()
    child = subprocess.run(
        [sys.executable, "-c", _PUT_THEN_SIGKILL, str(path)],
        input=alert.to_json(), capture_output=True, timeout=60, check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with Outbox(path) as box:
        items = box.pending(10)
    assert [unnumbered(i.payload) for i in items] == [alert]


@pytest.mark.parametrize(
    ("limits", "fits"),
    [
        pytest.param({"max_rows": 2}, 2, id="row-limit"),
        # payloads carry their numbering (a few bytes more than to_json())
        pytest.param({"max_bytes": 3 * len(make_alert().to_json()) + 50}, 2, id="byte-limit"),
    ],
)
def test_full_outbox_raises_and_stores_nothing(tmp_path: Path, limits: dict[str, int], fits: int) -> None:
    with Outbox(tmp_path / "outbox.sqlite", **limits) as box:
        stored = [make_alert() for _ in range(fits)]
        for alert in stored:
            box.put(alert)
        rejected = make_alert()
        with pytest.raises(OutboxFull, match=rf"outbox full: alert {rejected.alert_id} not stored") as info:
            box.put(rejected)
        assert info.value.alert_id == rejected.alert_id
        assert info.value.rows == fits
        assert [i.alert_id for i in box.pending(10)] == [a.alert_id for a in stored]

        box.put(stored[0])  # re-putting a stored alert is still a no-op, not "full"
        box.ack(stored[0].alert_id)
        box.put(rejected)  # room again after a delivery
        assert box.depth() == fits


def test_missing_folder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "outbox.sqlite"
    with pytest.raises(OutboxError, match=rf"folder {tmp_path / 'no-such-dir'} does not exist"):
        Outbox(path)


def test_folder_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutboxError, match="a-file.*does not exist"):
        Outbox(tmp_path / "a-file" / "outbox.sqlite")


def test_file_that_is_not_sqlite_is_named(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=rf"outbox {path}: cannot open as SQLite"):
        Outbox(path)


def test_read_only_folder_is_named() -> None:
    """Checked as an unprivileged user (root may write anywhere): a forked child drops to `nobody`."""
    base = Path(tempfile.mkdtemp(prefix="outbox-ro-", dir="/tmp"))
    folder = base / "ro"
    folder.mkdir(mode=0o555)
    base.chmod(0o755)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery here, report through the pipe and _exit
        message = "no error"
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            Outbox(folder / "outbox.sqlite")
        except OutboxError as exc:
            message = str(exc)
        except BaseException as exc:  # anything else is reported as a failure below
            message = f"unexpected {exc!r}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    message = os.read(read, 4096).decode()
    os.close(read)
    shutil.rmtree(base)
    assert f"folder {folder} is not writable" in message


def test_concurrent_put_and_ack_lose_nothing(outbox: Outbox) -> None:
    """The pipeline thread puts while the publisher thread reads and acks, as in production."""
    alerts = [make_alert() for _ in range(200)]
    acked: list[str] = []
    done = threading.Event()

    def publisher() -> None:
        while not (done.is_set() and outbox.depth() == 0):
            for item in outbox.pending(16):
                assert outbox.ack(item.alert_id)
                acked.append(item.alert_id)

    thread = threading.Thread(target=publisher)
    thread.start()
    for alert in alerts:
        outbox.put(alert)
    done.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert acked == [a.alert_id for a in alerts]  # each exactly once, in order



def numbers(box: Outbox) -> list[int]:
    return [parse_alert(i.payload).seq or 0 for i in box.pending(10_000)]


def test_alerts_are_numbered_without_gaps_across_restarts(tmp_path: Path) -> None:
    """The delivery audit's promise: 1, 2, 3 ... per outbox file, kept across a restart; a re-put
    takes no number, a refused alert takes none either."""
    path = tmp_path / "outbox.sqlite"
    with Outbox(path, max_rows=3) as box:
        first = [make_alert() for _ in range(3)]
        assert [box.put(a) for a in first] == [1, 2, 3]
        assert box.put(first[0]) is None
        with pytest.raises(OutboxFull):
            box.put(make_alert())
        outbox_id = box.outbox_id
        assert all(parse_alert(i.payload).outbox_id == outbox_id for i in box.pending(10))
        box.ack(first[0].alert_id)
    with Outbox(path, max_rows=3) as box:
        assert box.outbox_id == outbox_id
        assert box.put(make_alert()) == 4
        assert box.last_seq() == 4
        assert numbers(box) == [2, 3, 4]
    with Outbox(tmp_path / "other.sqlite") as other:
        assert other.outbox_id != outbox_id  # another file, another numbering


def test_delivered_alerts_are_kept_for_resends_then_expire(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite", retention_s=3600) as box:
        alerts = [make_alert() for _ in range(4)]
        for alert in alerts:
            box.put(alert)
        for alert in alerts[:3]:
            box.ack(alert.alert_id)
        assert (box.depth(), box.retained()) == (1, 3)

        result = box.resend(outbox_id=box.outbox_id, first=2, last=3)
        assert (result.requeued, result.missing) == (2, ())
        assert numbers(box) == [2, 3, 4]  # queued again, in their old order
        again = box.resend(outbox_id=box.outbox_id, first=1, last=9)
        assert (again.requeued, again.missing) == (1, ((5, 9),))  # 2-4 are waiting already
        assert box.resend(outbox_id="ob-someone-else", first=1, last=2).missing == ((1, 2),)
    with Outbox(tmp_path / "outbox.sqlite", retention_s=0) as box:
        for item in box.pending(10):
            box.ack(item.alert_id)
        box.put(make_alert())  # a put purges what is past retention
        assert box.retained() == 0
        assert box.resend(outbox_id=box.outbox_id, first=1, last=4).missing == ((1, 4),)


def test_delivered_alerts_make_room_but_waiting_ones_never_do(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.sqlite", max_rows=3) as box:
        for _ in range(3):
            box.put(make_alert())
        for item in box.pending(2):
            box.ack(item.alert_id)
        box.put(make_alert())  # room from the oldest delivered alert (seq 1)
        box.put(make_alert())  # ... then seq 2
        assert (box.depth(), box.retained()) == (3, 0)
        with pytest.raises(OutboxFull):
            box.put(make_alert())
        assert box.resend(outbox_id=box.outbox_id, first=1, last=2).missing == ((1, 2),)


def test_a_version_1_outbox_keeps_its_waiting_alerts(tmp_path: Path) -> None:
    """Upgrading the edge must not lose what a broker outage left waiting in the old file."""
    import sqlite3

    path = tmp_path / "outbox.sqlite"
    old = make_alert()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE, camera_id TEXT "
                 "NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL, created_at TEXT "
                 "NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)")
    conn.execute("INSERT INTO outbox (alert_id, camera_id, topic, payload, size, created_at) VALUES "
                 "(?, ?, ?, ?, ?, '2026-11-01T00:00:00+00:00')",
                 (old.alert_id, old.camera_id, alert_topic(old.edge_id, old.camera_id), old.to_json(),
                  len(old.to_json())))
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with Outbox(path) as box:
        assert box.put(make_alert()) == 1
        items = box.pending(10)
        assert [parse_alert(i.payload).seq for i in items] == [None, 1]
        assert parse_alert(items[0].payload) == old


@pytest.mark.parametrize(
    ("held", "first", "last", "missing"),
    [
        ([], 1, 5, ((1, 5),)),
        ([1, 2, 3], 1, 3, ()),
        ([2, 4], 1, 5, ((1, 1), (3, 3), (5, 5))),
        ([5, 6], 5, 9, ((7, 9),)),
    ],
)
def test_missing_ranges(held: list[int], first: int, last: int, missing: tuple[tuple[int, int], ...]) -> None:
    assert missing_ranges(held, first=first, last=last) == missing


def test_missing_ranges_are_bounded() -> None:
    held = list(range(2, 1000, 2))
    assert len(missing_ranges(held, first=1, last=1000)) == MAX_MISSING_RANGES
