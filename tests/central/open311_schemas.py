"""JSON Schemas of the GeoReport v2 documents, written from the specification
(wiki.open311.org/GeoReport_v2, the field tables of each call), as test data: the tests validate
every JSON answer against them with jsonschema-rs. `additionalProperties: false` where the spec
lists the fields, so a field we add by mistake (a contact, an address) fails too.

XML answers are converted with xmltodict (as the georeport client does) and checked for the same
field names.
"""

from __future__ import annotations

from typing import Any

W3C_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
_str_or_null: dict[str, Any] = {"type": ["string", "null"]}
_time: dict[str, Any] = {"type": "string", "pattern": W3C_DATETIME}
_time_or_null: dict[str, Any] = {"type": ["string", "null"], "pattern": W3C_DATETIME}

SERVICE: dict[str, Any] = {
    "type": "object",
    "required": ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"],
    "additionalProperties": False,
    "properties": {
        "service_code": {"type": "string", "minLength": 1},
        "service_name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "metadata": {"type": "boolean"},
        "type": {"enum": ["realtime", "batch", "blackbox"]},
        "keywords": {"type": "string"},
        "group": {"type": "string"},
    },
}
SERVICES = {"type": "array", "items": SERVICE}

ATTRIBUTE: dict[str, Any] = {
    "type": "object",
    "required": ["variable", "code", "datatype", "required", "order", "description"],
    "additionalProperties": False,
    "properties": {
        "variable": {"type": "boolean"},
        "code": {"type": "string", "minLength": 1},
        "datatype": {"enum": ["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]},
        "required": {"type": "boolean"},
        "datatype_description": _str_or_null,
        "order": {"type": "integer", "minimum": 0},
        "description": {"type": "string"},
        "values": {
            "type": "array",
            "items": {
                "type": "object", "required": ["key", "name"], "additionalProperties": False,
                "properties": {"key": {"type": "string"}, "name": {"type": "string"}},
            },
        },
    },
}
SERVICE_DEFINITION: dict[str, Any] = {
    "type": "object",
    "required": ["service_code", "attributes"],
    "additionalProperties": False,
    "properties": {"service_code": {"type": "string"}, "attributes": {"type": "array", "items": ATTRIBUTE}},
}

REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["service_request_id", "status", "service_code", "requested_datetime"],
    "additionalProperties": False,
    "properties": {
        "service_request_id": {"type": "string", "minLength": 1},
        "status": {"enum": ["open", "closed"]},
        "status_notes": _str_or_null,
        "service_name": {"type": "string"},
        "service_code": {"type": "string"},
        "description": _str_or_null,
        "agency_responsible": _str_or_null,
        "service_notice": _str_or_null,
        "requested_datetime": _time,
        "updated_datetime": _time_or_null,
        "expected_datetime": _time_or_null,
        "address": _str_or_null,
        "address_id": _str_or_null,
        "zipcode": _str_or_null,
        "lat": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
        "long": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
        "media_url": {"type": ["string", "null"], "pattern": "^https?://"},
    },
}
REQUESTS = {"type": "array", "items": REQUEST, "maxItems": 1000}

# POST requests answers the request id or a token (we answer both), a notice, the account id.
POST_RESPONSE: dict[str, Any] = {
    "type": "array", "minItems": 1, "maxItems": 1,
    "items": {
        "type": "object",
        "anyOf": [{"required": ["service_request_id"]}, {"required": ["token"]}],
        "additionalProperties": False,
        "properties": {
            "service_request_id": {"type": "string", "minLength": 1},
            "token": {"type": "string", "minLength": 1},
            "service_notice": _str_or_null,
            "account_id": _str_or_null,
        },
    },
}
TOKEN_RESPONSE: dict[str, Any] = {
    "type": "array", "minItems": 1,
    "items": {
        "type": "object", "required": ["service_request_id", "token"], "additionalProperties": False,
        "properties": {"service_request_id": {"type": "string"}, "token": {"type": "string"}},
    },
}
ERRORS: dict[str, Any] = {
    "type": "array", "minItems": 1,
    "items": {
        "type": "object", "required": ["code", "description"], "additionalProperties": False,
        "properties": {"code": {"type": "integer", "minimum": 400, "maximum": 599}, "description": {"type": "string"}},
    },
}
DISCOVERY: dict[str, Any] = {
    "type": "object",
    "required": ["changeset", "contact", "key_service", "endpoints"],
    "additionalProperties": False,
    "properties": {
        "changeset": _time, "contact": {"type": "string"}, "key_service": {"type": "string"},
        "endpoints": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["specification", "url", "changeset", "type", "formats"],
                "additionalProperties": False,
                "properties": {
                    "specification": {"const": "http://wiki.open311.org/GeoReport_v2"},
                    "url": {"type": "string", "pattern": "^https?://"},
                    "changeset": _time,
                    "type": {"enum": ["production", "test"]},
                    "formats": {"type": "array", "items": {"enum": ["text/xml", "application/json"]}},
                },
            },
        },
    },
}
REQUEST_FIELDS = frozenset(REQUEST["properties"])


def check(schema: dict[str, Any], document: object) -> None:
    """AssertionError listing every way the document breaks the schema."""
    import jsonschema_rs

    validator = jsonschema_rs.validator_for(schema)
    problems = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(document)]
    assert not problems, problems
