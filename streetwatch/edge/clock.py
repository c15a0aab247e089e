"""Is this box's clock right? Alert timestamps come from it, so a wrong clock puts every alert at
the wrong time (and central's de-duplication, timers and evidence with it).

Two sources, for `edge check`:
- `sntp_offset`: one SNTP exchange (RFC 4330) with an NTP server: the offset of the local clock
  from the server's, corrected for the round trip. MQTT brokers publish no time (Mosquitto has no
  `$SYS` clock topic), so a server must be named (`edge check --ntp-server`).
- `kernel_clock_state`: what the kernel says about its own discipline (adjtimex, read-only): an
  NTP daemon (chrony, systemd-timesyncd) that keeps the clock clears the "unsynchronised" flag
  and sets a maximum error. Nothing to ask over the network, so it is always shown.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
import time
from dataclasses import dataclass

NTP_PORT = 123
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class ClockError(OSError):
    """The clock could not be asked: no answer, or an answer that is not NTP."""


def _to_ntp(unix_s: float) -> bytes:
    seconds = int(unix_s) + _NTP_EPOCH_OFFSET
    fraction = int((unix_s % 1) * 2**32)
    return struct.pack("!II", seconds, fraction)


def _from_ntp(data: bytes) -> float:
    seconds, fraction = struct.unpack("!II", data)
    return seconds - _NTP_EPOCH_OFFSET + fraction / 2**32


def sntp_offset(host: str, *, port: int = NTP_PORT, timeout_s: float = 3.0) -> float:
    """Seconds to add to the local clock to match the server's (positive: the box is behind)."""
    request = bytearray(48)
    request[0] = 0x23  # leap 0, version 4, mode 3 (client)
    sent = time.time()
    request[40:48] = _to_ntp(sent)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.sendto(bytes(request), (host, port))
            reply, _ = sock.recvfrom(512)
        except OSError as exc:
            raise ClockError(f"NTP server {host}:{port}: no answer ({exc})") from None
    received = time.time()
    if len(reply) < 48 or reply[0] & 0x07 not in (4, 5) or reply[24:32] != bytes(request[40:48]):
        raise ClockError(f"NTP server {host}:{port}: the answer is not a reply to this request")
    server_received, server_sent = _from_ntp(reply[32:40]), _from_ntp(reply[40:48])
    return ((server_received - sent) + (server_sent - received)) / 2


@dataclass(frozen=True)
class KernelClock:
    synchronised: bool
    max_error_s: float


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h) on 64-bit Linux: the fields read here, then padding.
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


def kernel_clock_state() -> KernelClock | None:
    """The kernel's own view of its clock discipline; None where adjtimex is not available."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        adjtimex = ctypes.CDLL(name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    timex = _Timex()  # modes 0: read only, needs no privilege
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    synchronised = state != _TIME_ERROR and not timex.status & _STA_UNSYNC
    return KernelClock(synchronised=synchronised, max_error_s=timex.maxerror / 1e6)
