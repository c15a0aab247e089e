"""The GeoReport v2 documents as pydantic models, for /openapi.json and /docs only: the router
writes the documents itself (open311_format.py) in XML or JSON. Field names are the spec's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class Open311Service(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class Open311AttributeValue(BaseModel):
    key: str
    name: str


class Open311Attribute(BaseModel):
    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[Open311AttributeValue]


class Open311ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[Open311Attribute]


class Open311Request(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class Open311Created(BaseModel):
    service_request_id: str
    token: str
    service_notice: str | None
    account_id: str | None


class Open311Token(BaseModel):
    service_request_id: str
    token: str


class Open311Endpoint(BaseModel):
    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class Open311Discovery(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[Open311Endpoint]


class Open311Error(BaseModel):
    code: int
    description: str


def documented(model: Any, *errors: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the JSON model, XML beside it, and the spec's error list."""
    found: dict[int | str, dict[str, Any]] = {200: {"model": model, "content": {"text/xml": {}}}}
    for code in (*errors, 403):
        found[code] = {"model": list[Open311Error], "content": {"text/xml": {}}}
    return found
