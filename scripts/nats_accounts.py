#!/usr/bin/env python3
"""Logins and permissions for the StreetWatch NATS JetStream cluster (docs/cluster.md).

    python scripts/nats_accounts.py OUT_DIR central box-01 box-02 ...

Writes, into OUT_DIR (made if missing):
- accounts.conf: one account with JetStream; one user per name with a random password (bcrypt hash
  only) and the permissions of configs/nats/permissions.yaml (a box: its own subjects; `central`:
  the consumer and the commands);
- node.conf: a copy of configs/nats/node.conf, which includes accounts.conf;
- credentials: user:password in plain text, mode 0600: hand each line to its owner, then delete it.

Copy OUT_DIR to each node (the same accounts on all three). Re-run with every user to change them;
`nats-server --signal reload` (or a restart) makes a node read them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

import bcrypt
import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "nats"
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # edge/alerts.py ID_PATTERN
CENTRAL = "central"


class AccountsError(ValueError):
    pass


def subject_token(edge_id: str) -> str:
    """An edge id as the NATS gateway writes it in a subject ('.' in a topic level is '//')."""
    return edge_id.replace(".", "//")


def load_permissions(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AccountsError(f"{path}: cannot read the permissions: {exc}") from None
    for section in ("box", "central"):
        rules = data.get(section) if isinstance(data, dict) else None
        if not isinstance(rules, dict) or not {"publish", "subscribe"} <= rules.keys():
            raise AccountsError(f"{path}: {section}: expected a mapping with publish and subscribe lists")
    return data


def user_entry(name: str, password: str, rules: dict[str, list[str]]) -> dict[str, object]:
    """One NATS user: bcrypt hash, allowed subjects (a box's with its id filled in), connection types."""
    token = subject_token(name)
    allow = {kind: [subject.replace("{edge_id}", token) for subject in rules[kind]]
             for kind in ("publish", "subscribe")}
    return {
        "user": name,
        "password": bcrypt.hashpw(password.encode(), bcrypt.gensalt(11)).decode(),
        "permissions": {"publish": {"allow": allow["publish"]}, "subscribe": {"allow": allow["subscribe"]}},
        "allowed_connection_types": list(rules.get("connection_types", [])),  # type: ignore[call-overload]
    }


def accounts_conf(users: list[dict[str, object]], account: str) -> str:
    """nats-server configuration (its syntax accepts JSON values)."""
    body = json.dumps({account: {"jetstream": "enabled", "users": users}}, indent=2)
    return ("# Made by scripts/nats_accounts.py from configs/nats/permissions.yaml; passwords are bcrypt hashes.\n"
            f"accounts: {body}\n")


def check_names(names: list[str]) -> None:
    for name in names:
        if not ID.match(name):
            raise AccountsError(f"user {name!r}: expected an edge_id (letters, digits, _.:-, at most 64) or 'central'")
    if len(set(names)) != len(names):
        raise AccountsError("a user is named twice")


def write(out: Path, names: list[str], permissions: Path) -> None:
    check_names(names)
    data = load_permissions(permissions)
    credentials = {name: secrets.token_urlsafe(18) for name in names}
    users = [user_entry(name, password, data["central" if name == CENTRAL else "box"])  # type: ignore[arg-type]
             for name, password in credentials.items()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "accounts.conf").write_text(accounts_conf(users, str(data.get("account", "STREETWATCH"))))
    (out / "accounts.conf").chmod(0o640)
    shutil.copyfile(CONFIGS / "node.conf", out / "node.conf")
    secret = out / "credentials"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.writelines(f"{name}:{password}\n" for name, password in credentials.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="NATS logins and permissions for StreetWatch (docs/cluster.md)")
    parser.add_argument("out", type=Path, help="folder to write accounts.conf, node.conf and credentials into")
    parser.add_argument("users", nargs="+", help="'central' and the edge boxes' edge_ids")
    parser.add_argument("--permissions", type=Path, default=CONFIGS / "permissions.yaml",
                        help="the permission templates (default: configs/nats/permissions.yaml)")
    args = parser.parse_args(argv)
    try:
        write(args.out, args.users, args.permissions)
    except AccountsError as exc:
        print(f"nats_accounts: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/accounts.conf ({len(args.users)} user(s)), node.conf, and credentials "
          "(plain passwords, 0600: distribute, then delete)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
