"""GeoReport v2 documents in both of the spec's formats: XML (its default) and JSON.

Pure functions over plain records (dicts of str, float, bool, None, lists and dicts), so the
router builds one record and this module writes it either way. The spec's XML nests a list under
its plural name with one element per item in the singular (`<attributes><attribute>..`,
`<values><value>..`); `None` is an empty element, booleans are `true`/`false`.

Errors are the spec's list: `[{"code": 404, "description": "..."}]` or
`<errors><error><code>404</code><description>..</description></error></errors>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Literal
from xml.etree import ElementTree as ET

Format = Literal["xml", "json"]
FORMATS: tuple[Format, ...] = ("xml", "json")
MEDIA_TYPES: dict[Format, str] = {"xml": "text/xml; charset=utf-8", "json": "application/json"}
Value = str | int | float | bool | None | Sequence["Value"] | Mapping[str, "Value"]
Record = Mapping[str, Value]

# A list field's items take the singular name in XML.
SINGULAR = {"attributes": "attribute", "values": "value", "endpoints": "endpoint", "formats": "format"}
# Characters XML 1.0 cannot carry at all (not even escaped): dropped from text.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Open311Error(Exception):
    """A request the endpoint refuses, answered with the spec's error list and `status`."""

    def __init__(self, status: int, description: str, *, fmt: Format = "xml") -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.fmt = fmt


def split_format(name: str, *, default: Format = "xml") -> tuple[str, Format]:
    """'requests.json' -> ('requests', 'json'); no extension -> the default (the spec's XML).
    Open311Error 404 for an extension that is neither."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        return name, default
    lowered = ext.lower()
    if lowered not in FORMATS:
        raise Open311Error(404, f"format: expected .xml or .json, got .{ext[:20]}", fmt=default)
    return stem, lowered  # type: ignore[return-value]


def _text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("", str(value))


def _fill(parent: ET.Element, name: str, value: Value) -> None:
    node = ET.SubElement(parent, name)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _fill(node, key, item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _fill(node, SINGULAR.get(name, "item"), item)
    else:
        node.text = _text(value)


def to_xml(root: str, item: str | None, content: Sequence[Record] | Record) -> bytes:
    """`<root><item>..</item>..</root>` for a list, or `<root>..fields..</root>` for one record."""
    top = ET.Element(root)
    if isinstance(content, Mapping):
        for key, value in content.items():
            _fill(top, key, value)
    else:
        for record in content:
            _fill(top, item or "item", record)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8", xml_declaration=False)


def to_json(content: Sequence[Record] | Record) -> bytes:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def render(fmt: Format, root: str, item: str | None, content: Sequence[Record] | Record) -> tuple[bytes, str]:
    """The document and its media type."""
    body = to_json(content) if fmt == "json" else to_xml(root, item, content)
    return body, MEDIA_TYPES[fmt]


def error_document(fmt: Format, status: int, description: str) -> tuple[bytes, str]:
    return render(fmt, "errors", "error", [{"code": status, "description": description}])
