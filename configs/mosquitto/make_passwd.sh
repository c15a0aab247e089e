#!/usr/bin/env bash
# Make a Mosquitto password file for StreetWatch: one random password per user.
#   configs/mosquitto/make_passwd.sh PASSWD_FILE central box-01 box-02 ...
# Writes PASSWD_FILE (salted hashes, for the broker) and PASSWD_FILE.credentials (user:password in
# plain text, mode 0600: hand each line to its owner, then delete it). Passwords never appear on a
# command line (mosquitto_passwd -U hashes a plain file in place).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 PASSWD_FILE USER [USER ...]   (edge users are edge_ids; central logs in as 'central')" >&2
  exit 2
fi
out="$1"; shift
umask 077
plain="$(mktemp)"
trap 'rm -f "$plain"' EXIT
for user in "$@"; do
  case "$user" in *:*|"") echo "$0: user name '$user' may not be empty or contain ':'" >&2; exit 2;; esac
  printf '%s:%s\n' "$user" "$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')" >> "$plain"
done
cp "$plain" "$out.credentials"
mosquitto_passwd -U "$plain"
mv "$plain" "$out"
chmod 0640 "$out"
echo "wrote $out ($# user(s)) and $out.credentials (plain passwords, 0600: distribute, then delete)"
