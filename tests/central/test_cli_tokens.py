"""`central create-token` / `revoke-token`: a token works on the API until it is revoked."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central import cli
from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings


def test_token_issued_by_cli_authenticates_until_revoked(
    db_url: str,
    session_factory: sessionmaker[Session],
    central_settings: CentralSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REVIEWER_PASSWORD", "correct horse battery staple")
    base = ["--database-url", db_url]
    assert cli.main([*base, "create-user", "carol", "--password-env", "REVIEWER_PASSWORD"]) == 0
    assert cli.main([*base, "create-token", "carol", "--name", "ops"]) == 0
    match = re.search(r"token (\d+) for carol: (sw_\S+)", capsys.readouterr().out)
    assert match is not None
    token_id, secret = match.group(1), match.group(2)

    app = build_app(central_settings.model_copy(update={"web": WebSettings(mode="development")}), session_factory)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        assert client.get("/api/cases", headers=headers).status_code == 200
        assert cli.main([*base, "revoke-token", token_id]) == 0
        assert client.get("/api/cases", headers=headers).status_code == 401

    assert cli.main([*base, "revoke-token", token_id]) == 1
    assert cli.main([*base, "create-token", "nobody"]) == 1
    assert "no active user 'nobody'" in capsys.readouterr().err
