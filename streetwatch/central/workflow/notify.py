"""Merchant notification: a durable outbox and pluggable channels (a webhook first; SMS is another).

Messages are written to the `notifications` table in the same transaction as the case change
(timers.start_workflow), so a message exists exactly when the case says it was notified. The worker
delivers due messages one by one: success marks it `sent`; a failure counts the attempt and schedules
the next with exponential back-off (`rules.retry_delay_s`); after `max_attempts` it is `failed` (and
stays visible for an operator). Delivery is at least once: receivers de-duplicate by the
`Idempotency-Key` header (the notification id).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.db import session_scope
from streetwatch.central.models import Notification
from streetwatch.central.workflow.config import WorkflowSettings
from streetwatch.central.workflow.rules import retry_delay_s

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-StreetWatch-Signature"
MAX_ERROR_CHARS = 500


class DeliveryError(Exception):
    """A channel could not deliver a message; it will be retried."""


@dataclass(frozen=True)
class OutboundMessage:
    """What a channel sends: the notification id (idempotency key), its kind and its JSON body."""

    notification_id: int
    kind: str
    merchant_id: str | None
    case_id: int | None
    body: dict[str, object]


class NotificationChannel(Protocol):
    """An adapter to one way of reaching merchants. `deliver` raises DeliveryError on failure."""

    name: str

    def deliver(self, message: OutboundMessage) -> None: ...


class WebhookChannel:
    """POSTs the message as JSON to one URL (the city's messaging gateway); 2xx means delivered."""

    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 5.0, secret: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url: expected an http:// or https:// URL, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self._secret = secret.encode() if secret else None

    def deliver(self, message: OutboundMessage) -> None:
        body = json.dumps(
            {"notification_id": message.notification_id, "kind": message.kind, **message.body},
            ensure_ascii=False,
            sort_keys=True,
        ).encode()
        request = urllib.request.Request(self.url, data=body, method="POST")
        request.add_header("Content-Type", "application/json; charset=utf-8")
        request.add_header("Idempotency-Key", f"streetwatch-notification-{message.notification_id}")
        if self._secret is not None:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            request.add_header(SIGNATURE_HEADER, f"sha256={digest}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (URL checked)
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code} from {self.url}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"{self.url}: {exc}") from exc
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status} from {self.url}")


class LocalSinkChannel:
    """The local merchant-notice sink (the demo's): each message is appended as one JSON line to a
    file, flushed and fsynced before it counts as delivered. Stands in for the city's gateway."""

    name = "local-sink"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def deliver(self, message: OutboundMessage) -> None:
        line = json.dumps(
            {"notification_id": message.notification_id, "kind": message.kind, **message.body},
            ensure_ascii=False,
            sort_keys=True,
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write(line + "\n")
                sink.flush()
                os.fsync(sink.fileno())
        except OSError as exc:
            raise DeliveryError(f"{self.path}: {exc}") from exc


def channel_from_settings(settings: WorkflowSettings) -> NotificationChannel | None:
    """The webhook when one is configured, else the local sink when one is, else none (outbox only)."""
    if settings.webhook_url is None:
        return LocalSinkChannel(settings.notice_sink) if settings.notice_sink is not None else None
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else None
    return WebhookChannel(str(settings.webhook_url), timeout_s=settings.webhook_timeout_s, secret=secret)


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def due_ids(session: Session, *, now: datetime, limit: int) -> list[int]:
    query = (
        select(Notification.id)
        .where(Notification.status == "pending", Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def deliver_due(
    factory: sessionmaker[Session],
    channel: NotificationChannel,
    *,
    now: datetime,
    settings: WorkflowSettings,
    limit: int = 100,
) -> DeliveryReport:
    """Deliver every due message. Each is claimed in a short transaction (a lease: its next attempt
    moves past the send's timeout), sent with no transaction open (a slow gateway holds no database
    lock), and its outcome recorded in a second short transaction. A crash between the two leaves the
    claim to expire, so the message is sent again: at least once."""
    with factory() as session:
        ids = due_ids(session, now=now, limit=limit)
    counts = {"sent": 0, "retried": 0, "failed": 0}
    for notification_id in ids:
        with session_scope(factory, write_lock=True) as session:
            message = _claim(session, notification_id, now=now, settings=settings)
        if message is None:
            continue
        error: str | None = None
        try:
            channel.deliver(message)
        except DeliveryError as exc:
            error = str(exc)[:MAX_ERROR_CHARS]
        with session_scope(factory, write_lock=True) as session:
            outcome = _record(session, notification_id, error=error, now=now, settings=settings)
        log.log(
            logging.INFO if error is None else logging.WARNING,
            "case %s: notification %s (%s) via %s: %s%s",
            message.case_id,
            notification_id,
            message.kind,
            channel.name,
            outcome,
            f" ({error})" if error else "",
        )
        counts[outcome] += 1
    return DeliveryReport(**counts)


def _claim(
    session: Session, notification_id: int, *, now: datetime, settings: WorkflowSettings
) -> OutboundMessage | None:
    query = select(Notification).where(Notification.id == notification_id).with_for_update(skip_locked=True)
    row = session.scalars(query).one_or_none()
    if row is None or row.status != "pending" or row.next_attempt_at > now:  # taken by another worker, or done
        return None
    row.attempts += 1
    row.next_attempt_at = now + timedelta(seconds=settings.webhook_timeout_s * 2 + 60)  # the lease
    return OutboundMessage(row.id, row.kind, row.merchant_id, row.case_id, dict(row.payload))


def _record(
    session: Session, notification_id: int, *, error: str | None, now: datetime, settings: WorkflowSettings
) -> str:
    row = session.get(Notification, notification_id, with_for_update=True)
    assert row is not None
    if error is None:
        row.status, row.sent_at, row.last_error = "sent", now, None
        return "sent"
    row.last_error = error
    if row.attempts >= settings.max_attempts:
        row.status = "failed"
        return "failed"
    delay = retry_delay_s(row.attempts, base_s=settings.retry_base_s, max_s=settings.retry_max_s)
    row.next_attempt_at = now + timedelta(seconds=delay)
    return "retried"
