"""`central review confirm|dismiss`: scripted review through the same ReviewService as the desk.

Case ids come from the command line and/or a file (`--file`, one case per line: `ID` or, for
dismiss, `ID REASON`; `#` starts a comment). Each case is its own transaction with an audit row
naming `--user`, so a refused case (not found, already decided, outside the user's area) is
reported and the rest still go through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.case_service import Reviewer
from streetwatch.central.errors import DomainError
from streetwatch.central.models import User
from streetwatch.central.review import DISMISS_REASONS, ReviewService


class ReviewCliError(ValueError):
    """Bad input to `central review`; the message names the file and line or the flag."""


@dataclass(frozen=True)
class Decision:
    case_id: int
    reason: str | None  # dismiss only; None: the --reason flag's


def parse_decisions(lines: Iterable[str], *, where: str) -> list[Decision]:
    """`ID [REASON]` lines (blank lines and `#` comments skipped); errors name the file and line."""
    out = []
    for number, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        head, _, reason = text.partition(" ")
        try:
            case_id = int(head)
        except ValueError:
            message = f"{where}:{number}: expected a case id (and for dismiss a reason), got {text!r}"
            raise ReviewCliError(message) from None
        out.append(Decision(case_id, reason.strip() or None))
    return out


def reviewer_named(factory: sessionmaker[Session], username: str) -> Reviewer:
    with factory() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None or not user.is_active:
            raise ReviewCliError(f"--user: no active user {username!r} (central create-user {username})")
        return Reviewer.of(session, user)


def gather(ids: Iterable[int], file: Path | None) -> list[Decision]:
    decisions = [Decision(i, None) for i in ids]
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReviewCliError(f"--file {file}: {exc.strerror}") from None
        decisions += parse_decisions(text.splitlines(), where=str(file))
    if not decisions:
        raise ReviewCliError("give case ids, or --file with one case id per line")
    return decisions


def run_review(
    factory: sessionmaker[Session], action: str, decisions: list[Decision], *, username: str, reason: str | None
) -> tuple[list[str], int]:
    """Apply each decision; returns the lines to print and how many were refused."""
    reviewer = reviewer_named(factory, username)
    review = ReviewService(factory)
    lines, refused = [], 0
    for decision in decisions:
        try:
            if action == "confirm":
                outcome = review.confirm(decision.case_id, reviewer=reviewer)
            else:
                why = decision.reason or reason
                if not why:
                    raise ReviewCliError(
                        f"case {decision.case_id}: dismiss needs --reason (one of {', '.join(DISMISS_REASONS)})"
                    )
                outcome = review.dismiss(decision.case_id, reason=why, reviewer=reviewer)
            lines.append(f"case {outcome.case_id}: {outcome.status} (audit {outcome.audit_id})")
        except (DomainError, ReviewCliError) as exc:
            refused += 1
            lines.append(f"case {decision.case_id}: refused: {getattr(exc, 'detail', None) or exc}")
    return lines, refused
