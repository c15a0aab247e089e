"""Helpers for tests that use the pages as a browser would, through TestClient: the CSRF field of
a page, and logging in through the login form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def csrf_field(html: str) -> str:
    """The value of the page's CSRF form field."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def form_login(client: TestClient, user: str, password: str) -> TestClient:
    """Log in through the login form; the client then carries the session cookie."""
    token = csrf_field(client.get("/login").text)
    response = client.post(
        "/login", data={"username": user, "password": password, "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return client
