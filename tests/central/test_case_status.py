"""The case status state machine: every allowed move and every refused one, the groups the rest of
central asks about, and no status written anywhere but through `move`."""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from streetwatch.central.case_status import (
    ALL_STATUSES,
    CLOSABLE_STATUSES,
    IN_HAND_STATUSES,
    OPEN_STATUSES,
    REVIEWED_STATUSES,
    UNRESOLVED_STATUSES,
    VERIFIABLE_STATUSES,
    CaseStatus,
    IllegalTransition,
    move,
)
from streetwatch.central.errors import Conflict, http_status

CENTRAL = Path(__file__).resolve().parents[2] / "streetwatch" / "central"

# The city workflow (docs/design.md, "The case status machine"), written out by hand: (from, to) -> the action.
ALLOWED = {
    ("new", "confirmed"): "confirm",
    ("new", "dismissed"): "dismiss",
    ("new", "closed"): "merge",
    ("confirmed", "new"): "undo",
    ("dismissed", "new"): "undo",
    ("closed", "new"): "undo",
    ("confirmed", "notified"): "notify",
    ("notified", "rectified"): "rectified",
    ("notified", "escalated"): "inspection",
    ("rectified", "notified"): "verify_failed",
    ("escalated", "notified"): "verify_failed",
    ("confirmed", "closed"): "close",
    ("notified", "closed"): "close",
    ("rectified", "closed"): "close",
    ("escalated", "closed"): "close",
}
ACTIONS = sorted(set(ALLOWED.values()))
STATUSES = ["new", "confirmed", "dismissed", "notified", "rectified", "escalated", "closed"]


@dataclass
class FakeCase:
    id: int
    status: str


def test_the_status_strings_are_the_column_and_api_values() -> None:
    assert [s.value for s in ALL_STATUSES] == STATUSES


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(STATUSES, STATUSES)), ids="->".join)
def test_every_move_by_every_action(src: str, dst: str) -> None:
    """Each (from, to) pair: the one action the workflow names moves the case; every other action,
    and every pair the workflow does not name, is refused with both states in the message."""
    for action in ACTIONS:
        case = FakeCase(7, src)
        if ALLOWED.get((src, dst)) == action:
            move(case, CaseStatus(dst), action=action)
            assert case.status == dst
            continue
        with pytest.raises(IllegalTransition) as info:
            move(case, CaseStatus(dst), action=action)
        assert f"case 7: {action} cannot move a case from {src} to {dst}" in info.value.detail
        assert case.status == src  # unchanged
        assert isinstance(info.value, Conflict) and http_status(info.value) == 409


def test_final_statuses_say_so_and_an_unknown_stored_status_is_named() -> None:
    with pytest.raises(IllegalTransition, match="from dismissed: new by undo"):
        move(FakeCase(1, "dismissed"), CaseStatus.CONFIRMED, action="confirm")
    with pytest.raises(ValueError, match="status: expected one of new, confirmed.*got 'reopened'"):
        move(FakeCase(1, "reopened"), CaseStatus.CLOSED, action="close")


@pytest.mark.parametrize(
    ("group", "members"),
    [
        (OPEN_STATUSES, ["new", "confirmed", "notified"]),  # an alert may still join
        (IN_HAND_STATUSES, ["confirmed", "notified", "escalated"]),  # Open311 "open"
        (UNRESOLVED_STATUSES, ["new", "confirmed", "notified", "escalated"]),  # on the map
        (REVIEWED_STATUSES, ["confirmed", "dismissed", "notified", "rectified", "escalated", "closed"]),
        (CLOSABLE_STATUSES, ["confirmed", "notified", "rectified", "escalated"]),
        (VERIFIABLE_STATUSES, ["rectified", "escalated"]),
    ],
    ids=["open", "in-hand", "unresolved", "reviewed", "closable", "verifiable"],
)
def test_status_groups(group: tuple[CaseStatus, ...], members: list[str]) -> None:
    assert [s.value for s in group] == members


def _status_writes(tree: ast.AST) -> list[int]:
    """Lines that assign a case status (a CaseStatus member or one of its strings) to `<x>.status`."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        flat = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        if not any(isinstance(t, ast.Attribute) and t.attr == "status" for t in flat):
            continue
        values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
        for value in values:
            if isinstance(value, ast.Constant) and value.value in STATUSES:
                lines.append(node.lineno)
            member = isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
            if member and value.value.id == "CaseStatus":  # type: ignore[attr-defined]
                lines.append(node.lineno)
    return lines


def test_no_module_but_case_status_writes_a_case_status() -> None:
    """Every writer goes through move(): a direct `case.status = ...` anywhere else fails here."""
    found = {
        str(path.relative_to(CENTRAL)): lines
        for path in sorted(CENTRAL.rglob("*.py"))
        if path.name != "case_status.py" and (lines := _status_writes(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert found == {}
    planted = ast.parse('case.status = "closed"\ntimer.status, timer.outcome = "done", "x"\nc.status = CaseStatus.NEW')
    assert _status_writes(planted) == [1, 3]  # the check itself finds what it looks for
