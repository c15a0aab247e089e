"""`${VAR}` and `${VAR:-default}` in every string of the edge and central YAML files.

    url: rtsp://viewer:${CAM_001_PASSWORD}@10.0.3.17:554/stream1
    broker: {url: "mqtt://${BROKER_HOST:-127.0.0.1}:1883"}

- `${VAR}`: the variable's value; if VAR is unset, the contents of the file named by `VAR_FILE`
  (one trailing newline dropped); if neither is set, a ConfigError naming the file, the field and
  the variable.
- `${VAR:-default}`: as above, but `default` when VAR is unset or empty (as in the shell).
- `$${` is a literal `${`; a `$` anywhere else is just a `$` (passwords may hold one).

Why `VAR_FILE` rather than a `${file:/run/secrets/x}` form: the YAML names only the variable, and
the deployment decides where its value lives: the environment, a Docker/compose secret
(`/run/secrets/x`) or a systemd credential (`LoadCredential=`, `$CREDENTIALS_DIRECTORY`), without
editing the file. It is the convention the official PostgreSQL and MariaDB images use.

Values read from a `_FILE`, and values of variables whose name says they are secret (PASSWORD,
SECRET, TOKEN, KEY, CREDENTIAL), are registered with streetwatch.redaction so no log, metric,
status message or error shows them; URL passwords are masked there whatever their source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar, cast

from streetwatch.redaction import register_secret

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
FILE_SUFFIX = "_FILE"
MAX_SECRET_FILE_BYTES = 64 * 1024

Parsed = TypeVar("Parsed")


class ConfigError(ValueError):
    """A setting that cannot work, phrased for the operator: the message names the file or the field.
    (Edge and central both raise it; streetwatch.broker_config re-exports it.)"""


def substitute(data: Parsed, environ: Mapping[str, str], *, where: str) -> Parsed:
    """A copy of the parsed YAML `data` (same shape) with every string's references replaced
    (keys untouched). `where` names the file in errors."""
    return cast(Parsed, _walk(data, environ, where=where, path=()))


def has_reference(value: object) -> bool:
    """True if `value` is a string with a `${...}` reference (it names a variable, holds no value)."""
    return isinstance(value, str) and any(m.group(1) for m in _REFERENCE.finditer(value))


def _walk(node: object, environ: Mapping[str, str], *, where: str, path: tuple[str, ...]) -> object:
    if isinstance(node, str):
        return _substitute_string(node, environ, where=where, field=".".join(path) or "<top level>")
    if isinstance(node, Mapping):
        return {key: _walk(value, environ, where=where, path=(*path, str(key))) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(item, environ, where=where, path=(*path, str(i))) for i, item in enumerate(node)]
    return node


def _substitute_string(text: str, environ: Mapping[str, str], *, where: str, field: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "${"  # the $${ escape
        default = match.group(2)[2:] if match.group(2) is not None else None
        return _value(match.group(1), default, environ, where=where, field=field)

    result = _REFERENCE.sub(replace, text)
    leftover = _REFERENCE.sub("", text)
    if "${" in leftover:
        raise ConfigError(
            f"{where}: {field}: a '${{' without a valid '${{NAME}}' or '${{NAME:-default}}' after it "
            "(names are letters, digits and _; write '$${' for a literal '${')"
        )
    return result


def read_variable(name: str, environ: Mapping[str, str], *, where: str, field: str, secret: bool = False) -> str | None:
    """`name`'s value from `environ`, else the contents of the file `name_FILE` names, else None.
    A value from a file, or of a variable named like a secret (or `secret`), is registered for
    redaction. (Also how broker.password_env is read, so a password may come from a secrets file.)"""
    value = environ.get(name)
    if value is not None:
        if secret or _SECRET_NAME.search(name):
            register_secret(value)
        return value
    file_name = environ.get(name + FILE_SUFFIX)
    if not file_name:
        return None
    content = _read_secret_file(Path(file_name), variable=name + FILE_SUFFIX, where=where, field=field)
    register_secret(content)
    return content


def _value(name: str, default: str | None, environ: Mapping[str, str], *, where: str, field: str) -> str:
    if default is not None and not environ.get(name):
        environ = {key: value for key, value in environ.items() if key != name}  # empty counts as unset
    value = read_variable(name, environ, where=where, field=field)
    if value is not None:
        return value
    if default is not None:
        return default
    raise ConfigError(
        f"{where}: {field}: environment variable {name} is not set (nor {name}{FILE_SUFFIX}, a file holding "
        f"its value); set one of them, or give a default as ${{{name}:-value}}"
    )


def _read_secret_file(path: Path, *, variable: str, where: str, field: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: {field}: ${variable} names {path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{where}: {field}: ${variable} names {path}: larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {field}: ${variable} names {path}: not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text
