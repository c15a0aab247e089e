"""Schemathesis against the JSON API's own OpenAPI document: every operation, generated inputs
(valid and invalid), sent with an admin token to a database seeded through the real ingest path.

The property: no 5xx ever, and every 4xx JSON answer says why (a non-empty `detail`). Review
actions are among the operations, so generated requests also confirm, dismiss, merge and reassign
the seeded cases. Runs on SQLite or PostgreSQL (tests/central/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from review_seed import seed_cases, seed_city, street_jpeg
from schemathesis.openapi import from_asgi
from sqlalchemy.orm import Session, sessionmaker

from streetwatch.central.api.tokens import issue_token
from streetwatch.central.app import build_app
from streetwatch.central.config import CentralSettings, WebSettings

DEV_SECURITY = WebSettings(mode="development", secret_key="y" * 40, cookie_secure=False)  # type: ignore[arg-type]


def _check(case: schemathesis.Case, token: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if 400 <= response.status_code < 500 and "json" in response.headers.get("content-type", ""):
        assert response.json().get("detail"), f"{where}: a refusal without a reason"


# Found by this test: 64-bit overflow case ids gave 500s (fixed in b8e9ce3); still open:
def test_api_never_answers_5xx_and_every_refusal_says_why(
    session_factory: sessionmaker[Session], central_settings: CentralSettings, street_dir: Path
) -> None:
    seed_city(session_factory)
    seed_cases(session_factory, central_settings, [street_jpeg(street_dir, "kerb_parked_cars_street.jpg")])
    token = issue_token(session_factory, username="admin", name="fuzz").secret
    app = build_app(central_settings.model_copy(update={"web": DEV_SECURITY}), session_factory)
    schema = from_asgi("/openapi.json", app).include(path_regex="^/api/")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 5, "the API's operations are in its OpenAPI document"
    failures: list[str] = []
    for operation in operations:
        # One hypothesis run per operation (schemathesis' pytest plugin does not load under this
        # pytest); every operation is tried, and all the failures are reported together.
        run = settings(max_examples=10, deadline=None, database=None, print_blob=False, derandomize=True,
                       phases=[Phase.explicit, Phase.generate],
                       suppress_health_check=list(HealthCheck))(given(case=operation.as_strategy())(_check))
        try:
            run(token=token)
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            failures.append(f"{operation.method.upper()} {operation.path}: {type(exc).__name__}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)
