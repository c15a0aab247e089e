"""Open311 client keys (the GeoReport `api_key`): one per app or partner system, shown once,
stored as a SHA-256 hash, revocable. Issued and revoked from the command line
(`central open311-key create|revoke|list`); every change is audited.

A key lets its client POST citizen reports and, when reads are not public, read the city's
published requests. It is not a user login: it sees no more than the public would.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.api.security import hash_api_token
from streetwatch.central.db import session_scope
from streetwatch.central.models import AuditLog, Open311Client, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "o311_"
MAX_NAME_CHARS = 100
MAX_KEY_CHARS = 200  # longer presented keys are refused before hashing


class Open311KeyError(ValueError):
    """A key request naming a missing client; the message is safe to show."""


@dataclass(frozen=True)
class IssuedKey:
    id: int
    name: str
    secret: str  # shown once; only its hash is stored


@dataclass(frozen=True)
class ClientRow:
    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None


def issue_key(factory: sessionmaker[Session], *, name: str, actor: str = "cli") -> IssuedKey:
    """A new client key named `name` (what the client is: "city app", "hotline system")."""
    name = " ".join(name.split())[:MAX_NAME_CHARS]
    if not name:
        raise Open311KeyError("name: expected what the client is (e.g. 'city 311 app'), got an empty name")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with session_scope(factory) as session:
        client = Open311Client(name=name, key_hash=hash_api_token(secret), created_at=utcnow())
        session.add(client)
        session.flush()
        session.add(AuditLog(case_id=None, actor=actor, action="open311_key_issue",
                             detail={"client_id": client.id, "name": name}))
        log.info("open311 key %d (%s) issued by %s", client.id, name, actor)
        return IssuedKey(id=client.id, name=name, secret=secret)


def revoke_key(factory: sessionmaker[Session], client_id: int, *, actor: str = "cli") -> bool:
    """Revoke a client's key; True if it was active. Its POSTs get 403 from then on."""
    with session_scope(factory) as session:
        client = session.get(Open311Client, client_id)
        if client is None:
            raise Open311KeyError(f"client_id: no Open311 client {client_id}")
        if client.revoked_at is not None:
            return False
        client.revoked_at = utcnow()
        session.add(AuditLog(case_id=None, actor=actor, action="open311_key_revoke", detail={"client_id": client_id}))
        log.info("open311 key %d revoked by %s", client_id, actor)
        return True


def list_clients(session: Session) -> list[ClientRow]:
    rows = session.scalars(select(Open311Client).order_by(Open311Client.id))
    return [ClientRow(c.id, c.name, c.created_at, c.revoked_at) for c in rows]


def client_for_key(session: Session, secret: str) -> Open311Client | None:
    """The active client a presented key belongs to, or None (unknown, revoked, malformed)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_KEY_CHARS:
        return None
    client = session.scalars(
        select(Open311Client).where(Open311Client.key_hash == hash_api_token(secret))
    ).one_or_none()
    if client is None or client.revoked_at is not None:
        return None
    return client
