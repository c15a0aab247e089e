"""Refuse a NUL byte anywhere in a request before a handler (and the database) sees it.

PostgreSQL cannot store U+0000 in text and answers such a query with an error, so a NUL in a path,
a query parameter, a form field (the login form too) or a JSON string became a 500. This ASGI
middleware answers 400 with `{detail}` naming where the NUL was. Uploaded files inside a multipart
form may hold any bytes (a JPEG has NULs); only the form's text fields are checked.

To look, the middleware reads the body before the handler does, so it also bounds it: a body
larger than `max_body_bytes` (by its Content-Length or as it arrives) is a 413.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from streetwatch.central.open311_format import Format, error_document

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ENCODED_NUL = re.compile(rb"%00")
_JSON_NUL = re.compile(rb"\\u0000", re.IGNORECASE)


def _target_problem(scope: Scope) -> str | None:
    if "\x00" in scope.get("path", "") or _ENCODED_NUL.search(scope.get("raw_path") or b""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"\x00" in query or _ENCODED_NUL.search(query):
        return "query"
    return None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1")).lower()
    return ""


class _TooLarge(Exception):
    pass


async def _body(receive: Receive, limit: int) -> tuple[bytes, list[Message]]:
    chunks, messages, size = [], [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def again() -> Message:
        return pending.pop(0) if pending else await receive()

    return again


async def _multipart_problem(scope: Scope, messages: list[Message]) -> str | None:
    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    request = Request(scope, _replay(messages, nothing))
    try:
        form = await request.form()
    except Exception:  # noqa: BLE001 - a malformed form is the handler's to refuse, as before
        return None
    try:
        for name, value in form.multi_items():
            if "\x00" in name or (not isinstance(value, UploadFile) and "\x00" in value):
                return f"form field {name.replace(chr(0), '')!r}"
    finally:
        await form.close()
    return None


def _body_problem(content_type: str, body: bytes) -> str | None:
    if "application/x-www-form-urlencoded" in content_type:
        return "form" if b"\x00" in body or _ENCODED_NUL.search(body) else None
    if "json" in content_type or content_type.startswith("text/"):
        return "body" if b"\x00" in body or _JSON_NUL.search(body) else None
    return None


NUL_REFUSED = "a NUL byte (U+0000) is not allowed"


async def _refuse(send: Send, scope: Scope, where: str, *, detail: str = NUL_REFUSED, code: int = 400) -> None:
    """`{detail}` as JSON, or under /open311/ the GeoReport v2 error list (XML unless the path asks .json)."""
    path = str(scope.get("path", ""))
    if path.startswith("/open311/"):
        fmt: Format = "json" if path.lower().endswith(".json") else "xml"
        body, media_type = error_document(fmt, code, f"{where}: {detail}")
    else:
        body, media_type = json.dumps({"detail": f"{where}: {detail}"}).encode(), "application/json"
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RefuseNulBytes:
    """ASGI middleware: 400 for a NUL in the path, the query, a form's text fields or a JSON body."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = 16 * 1024 * 1024) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _target_problem(scope)
        if where is not None:
            await _refuse(send, scope, where)
            return
        content_type = _header(scope, b"content-type")
        if scope.get("method") in ("GET", "HEAD") or not content_type:
            await self.app(scope, receive, send)
            return
        too_large = f"larger than {self.max_body_bytes} bytes"
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(send, scope, "body", detail=too_large, code=413)
            return
        try:
            body, messages = await _body(receive, self.max_body_bytes)
        except _TooLarge:
            await _refuse(send, scope, "body", detail=too_large, code=413)
            return
        if "multipart/form-data" in content_type:
            where = await _multipart_problem(scope, messages)
        else:
            where = _body_problem(content_type, body)
        if where is not None:
            await _refuse(send, scope, where)
            return
        await self.app(scope, _replay(messages, receive), send)
