"""Display names of every stored token the pages show: violations, statuses, attribution methods,
dismissal reasons, strike steps, grades, audit actions and their details, lifecycle stages.

The tables hold English msgids marked with `N_`; `label(kind, value)` translates one for the page
being rendered (i18n.py). A token with no entry is shown as itself, and the zh-CN page test
(tests/central/test_review_desk_browser.py) fails on it, so a new token cannot slip through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from streetwatch.central.web.i18n import N_, format_when, template_gettext

VIOLATION: Final = {
    "illegal_parking": N_("Illegal parking"),
    "street_vending": N_("Street vending"),
    "stacked_goods": N_("Stacked goods"),
}
STATUS: Final = {
    "new": N_("To review"),
    "confirmed": N_("Confirmed"),
    "dismissed": N_("Dismissed"),
    "notified": N_("Merchant notified"),
    "rectified": N_("Self-rectified"),
    "escalated": N_("Inspector sent"),
    "closed": N_("Closed"),
}
ATTRIBUTION: Final = {
    "inside_zone": N_("inside the responsibility zone"),
    "nearest": N_("nearest zone"),
    "manual": N_("assigned by a reviewer"),
    "none": N_("not attributed"),
}
DISMISS_REASON: Final = {
    "false_detection": N_("False detection"),
    "not_a_violation": N_("Not a violation"),
    "allowed_time_window": N_("Within allowed hours"),
    "wrong_location": N_("Wrong location"),
    "duplicate": N_("Duplicate"),
    "other": N_("Other"),
}
STRIKE: Final = {
    "warning": N_("Warning"),
    "rectification_notice": N_("Rectification notice"),
    "penalty": N_("Penalty"),
    "penalty_notice": N_("Penalty notice"),
}
GRADE: Final = {"red": N_("Red"), "yellow": N_("Yellow"), "green": N_("Green")}
FREQUENCY: Final = {"daily": N_("daily"), "weekly": N_("weekly"), "monthly": N_("monthly")}
INSPECTION_REASON: Final = {"case": N_("unrectified case"), "routine": N_("routine visit")}
INSPECTION_RESULT: Final = {"passed": N_("rectified"), "failed": N_("not rectified"), "done": N_("visited")}
NOTICE_STATUS: Final = {"pending": N_("waiting to be sent"), "sent": N_("delivered"), "failed": N_("failed")}
TIMER_OUTCOME: Final = {
    "rectified": N_("self-rectified"),
    "inspection": N_("inspector sent"),
    "cancelled": N_("cancelled"),
}
ACTION: Final = {
    "confirm": N_("confirmed"),
    "dismiss": N_("dismissed"),
    "merge": N_("merged into another case"),
    "merge_in": N_("took in a merged case"),
    "reassign": N_("merchant reassigned"),
    "undo": N_("decision undone"),
    "notify": N_("merchant notified"),
    "rectified": N_("self-rectified in time"),
    "inspection": N_("not rectified: inspector sent"),
    "cancelled": N_("timer cancelled"),
    "verified": N_("verified"),
    "verify_failed": N_("verification failed: back to dispatch"),
    "penalty": N_("penalty decided"),
    "close": N_("closed"),
    "inspected": N_("inspection done"),
    "assign": N_("visit assigned"),
    "complaint": N_("complaint recorded"),
    "grade": N_("grade changed"),
    "citizen_report": N_("citizen report received"),
    "verify_report": N_("citizen report verified"),
}
# Who opened a case (models.CASE_SOURCES).
SOURCE: Final = {"camera": N_("street camera"), "citizen": N_("citizen report")}
# The national digital-city-management stages (workflow/rules.LIFECYCLE_STAGES).
STAGE: Final = {
    "report": N_("Reported"),
    "file": N_("Filed"),
    "dispatch": N_("Dispatched"),
    "handle": N_("Handling"),
    "feedback": N_("Feedback"),
    "verify": N_("Verified"),
    "close": N_("Closed"),
    "void": N_("Not filed"),
}
WEAK: Final = {
    "no_location": N_("no location: the camera is not calibrated"),
    "unattributed": N_("no merchant attributed"),
    "single_alert": N_("one alert only"),
    "low_confidence": N_("low detection confidence"),
}
MOMENT: Final = {  # an evidence set's frames (wire 1.2)
    "first seen": N_("first seen"),
    "confirmed": N_("confirmed"),
    "latest": N_("latest"),
}
TABLES: Final[Mapping[str, Mapping[str, str]]] = {
    "violation": VIOLATION,
    "moment": MOMENT,
    "status": STATUS,
    "attribution": ATTRIBUTION,
    "reason": DISMISS_REASON,
    "strike": STRIKE,
    "grade": GRADE,
    "frequency": FREQUENCY,
    "inspection_reason": INSPECTION_REASON,
    "inspection_result": INSPECTION_RESULT,
    "notice_status": NOTICE_STATUS,
    "timer_outcome": TIMER_OUTCOME,
    "action": ACTION,
    "stage": STAGE,
    "weak": WEAK,
    "source": SOURCE,
}
# Audit detail keys: their names, and which table translates their values.
DETAIL_KEYS: Final = {
    "from": (N_("from"), "status"),
    "to": (N_("to"), "grade"),
    "reason": (N_("reason"), "reason"),
    "into_case_id": (N_("into case"), None),
    "from_case_id": (N_("from case"), None),
    "alerts": (N_("alerts"), None),
    "from_merchant_id": (N_("previous merchant"), None),
    "to_merchant_id": (N_("new merchant"), None),
    "from_method": (N_("previous attribution"), "attribution"),
    "strike": (N_("strike"), None),
    "action": (N_("step"), "strike"),
    "rectify_by": (N_("rectify by"), None),
    "timer": (N_("timer"), None),
    "due_at": (N_("due"), None),
    "decision": (N_("decision"), None),
    "note": (N_("note"), None),
    "merchant_id": (N_("merchant"), None),
    "complaint_id": (N_("complaint"), None),
    "inspection_id": (N_("inspection"), None),
    "records": (N_("records"), None),
    "undid": (N_("undid"), "action"),
    "override": (N_("supervisor override"), None),
    "result": (N_("result"), "inspection_result"),
    "assignee": (N_("inspector"), None),
    "reports": (N_("citizen reports"), None),
    "joined_existing": (N_("joined an open case"), None),
}
# Kept for undo (alert ids moved by a merge, the values a merge replaced): not for reading.
HIDDEN_DETAIL_KEYS: Final = frozenset(
    {
        "alert_ids",
        "episode_ids",
        "target_priority",
        "target_evidence_sha256",
        "from_distance_m",
        "undid_audit_id",
        "photo",  # shown as the photo itself on the workflow page
    }
)
TIMER_KINDS: Final = {"rectify": N_("rectification"), "redispatch": N_("rectification after a failed check")}


def label(kind: str, value: str | None) -> str:
    """The display name of `value` in the table `kind`, translated; the value itself if unknown."""
    if value is None:
        return ""
    msgid = TABLES[kind].get(value)
    return template_gettext(msgid) if msgid is not None else value


def _value_text(key: str, value: object, table: str | None) -> str:
    if isinstance(value, bool):
        return template_gettext(N_("yes")) if value else template_gettext(N_("no"))
    if table is not None and isinstance(value, str):
        if key == "from" and value in GRADE:  # a grade change's "from"
            return label("grade", value)
        return label(table, value)
    if key in ("rectify_by", "due_at") and isinstance(value, str):
        return format_when(value)
    if key == "timer" and isinstance(value, str):
        return template_gettext(TIMER_KINDS.get(value, value))
    return str(value)


def describe_detail(detail: Mapping[str, object] | None) -> list[tuple[str, str]]:
    """An audit row's details as (name, value) pairs in the page's language."""
    pairs = []
    for key, value in (detail or {}).items():
        if key in HIDDEN_DETAIL_KEYS:
            continue
        name, table = DETAIL_KEYS.get(key, (key, None))
        pairs.append((template_gettext(name), _value_text(key, value, table)))
    return pairs


# Refusals of the services by their code (errors.DomainError.code), in the page's language.
ERRORS: Final = {
    "case_not_found": N_("Case %(case_id)s was not found."),
    "wrong_status": N_("Case %(case_id)s is already “%(status)s”; this decision is no longer possible."),
    "merge_self": N_("A case cannot be merged into itself."),
    "merge_target_closed": N_("Case %(case_id)s is closed; pick an open case to merge into."),
    "merge_other_violation": N_("Only cases of the same violation can be merged."),
    "merchant_not_found": N_("Merchant %(merchant_id)s was not found."),
    "decision_not_found": N_("That decision was not found."),
    "undo_not_yours": N_("Only the reviewer who decided case %(case_id)s can undo it."),
    "undo_expired": N_("The undo time for case %(case_id)s has passed."),
    "undo_superseded": N_("Case %(case_id)s changed after the decision; it cannot be undone."),
    "needs_penalty": N_("Case %(case_id)s is a third strike: record the penalty before closing it."),
    "needs_verification": N_(
        "Case %(case_id)s was dispatched: verify it first, or a supervisor closes it with a note."
    ),
}


def error_text(code: str | None, params: Mapping[str, object]) -> str | None:
    """A service refusal in the page's language; None when its code has no message here."""
    msgid = ERRORS.get(code or "")
    if msgid is None:
        return None
    values = dict(params)
    if "status" in values:
        values["status"] = label("status", str(values["status"]))
    return template_gettext(msgid) % values


def ui_labels() -> dict[str, dict[str, str]]:
    """The display names the page script needs (candidates come as JSON with raw tokens)."""
    return {kind: {value: label(kind, value) for value in TABLES[kind]} for kind in ("violation", "status")}


# Strings shown through a variable (the login page's errors, the error page's HTTP reasons), marked
# here so the catalogue has them.
SHOWN_BY_VALUE: Final = (
    N_("Wrong user name or password."),
    N_("Error"),
    N_("Bad Request"),
    N_("Unauthorized"),
    N_("Forbidden"),
    N_("Not Found"),
    N_("Conflict"),
    N_("Unprocessable Content"),
    N_("Too Many Requests"),
    N_("Internal Server Error"),
)
