"""`central review confirm|dismiss`: scripted review, one audit row per case, bulk from a file, the
closed list of dismissal reasons (a typo is refused, not stored as a reason nobody harvests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_seed import add_case
from sqlalchemy import select

from streetwatch.central.cli import main
from streetwatch.central.db import make_engine, make_session_factory, session_scope
from streetwatch.central.models import AuditLog, Case, User
from streetwatch.central.review import DISMISS_REASONS, reason_code


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def seeded(db_url: str) -> list[int]:
    factory = make_session_factory(make_engine(db_url))
    with session_scope(factory) as session:
        session.add(User(username="ops", password_hash="x", role="admin", is_active=True))
        ids = [add_case(session, lat=31.3 + i * 0.01, lon=120.5).id for i in range(4)]
    return ids


def decisions(db_url: str) -> dict[int, tuple[str, str, object]]:
    factory = make_session_factory(make_engine(db_url))
    with factory() as session:
        audit = {a.case_id: (a.actor, a.action, a.detail.get("reason")) for a in session.scalars(select(AuditLog))}
        statuses = {c.id: c.status for c in session.scalars(select(Case))}
    return {cid: (statuses[cid], *audit[cid][:1], audit[cid][2]) for cid in audit}  # type: ignore[misc]


def test_confirm_and_dismiss_by_id_and_from_a_file(
    capsys: pytest.CaptureFixture[str], db_url: str, seeded: list[int], tmp_path: Path
) -> None:
    a, b, c, d = seeded
    code, out, _ = run(capsys, "--database-url", db_url, "review", "confirm", str(a), "--user", "ops")
    assert code == 0 and f"case {a}: confirmed" in out
    listing = tmp_path / "dismiss.txt"
    listing.write_text(f"# from the night shift\n{b} false_detection\n\n{c}\n", encoding="utf-8")
    code, out, _ = run(capsys, "--database-url", db_url, "review", "dismiss", "--file", str(listing),
                       "--reason", "duplicate", "--user", "ops")
    assert code == 0, out
    assert decisions(db_url) == {
        a: ("confirmed", "ops", None),
        b: ("dismissed", "ops", "false_detection"),  # the line's reason
        c: ("dismissed", "ops", "duplicate"),  # the flag's
    }
    code, out, err = run(capsys, "--database-url", db_url, "review", "confirm", str(a), str(d), "--user", "ops")
    assert code == 1 and f"case {a}: refused: case {a} is confirmed" in out and f"case {d}: confirmed" in out
    assert "1 of 2 cases refused" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dismiss", "{id}", "--reason", "looks fine to me"], "reason: expected one of false_detection, "),
        (["dismiss", "{id}"], "dismiss needs --reason"),
        (["confirm", "{id}", "--user", "nobody"], "--user: no active user 'nobody'"),
        (["confirm", "--file", "/no/such/file"], "--file /no/such/file: No such file or directory"),
        (["confirm"], "give case ids, or --file"),
    ],
)
def test_bad_input_names_the_problem_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], db_url: str, seeded: list[int], argv: list[str], message: str
) -> None:
    args = [a.format(id=seeded[0]) for a in argv]
    if "--user" not in args:
        args += ["--user", "ops"]
    code, out, err = run(capsys, "--database-url", db_url, "review", *args)
    assert code == 1 and message in out + err
    assert decisions(db_url) == {}


@pytest.mark.parametrize(
    ("typed", "code"),
    [("False detection", "false_detection"), (" not-a-violation ", "not_a_violation"), ("DUPLICATE", "duplicate"),
     ("false detections", None), ("ok", None)],
)
def test_typed_and_stored_reasons_map_onto_the_closed_list(typed: str, code: str | None) -> None:
    assert reason_code(typed) == code
    assert code is None or code in DISMISS_REASONS
