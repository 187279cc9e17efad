"""Parse Synapse's `devices.ip` the way MAS's reference parser (Rust `IpAddr::from_str`) does (§6.6).

Python's ``ipaddress`` is more lenient (it accepts IPv6 zone ids), so the accepted forms are checked
explicitly: dotted-quad IPv4 without leading zeros, or plain IPv6 without port, brackets or zone id.
"""
from __future__ import annotations

import ipaddress
import re
import socket

_IPV4 = re.compile(r"(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(value: str | None) -> tuple[Address | None, bool]:
    """Return (address or None, invalid?). ``None`` and ``-`` are absent, not invalid."""
    if value is None or value == "-":
        return None, False
    if _IPV4.fullmatch(value):
        try:  # from the packed form: about twice as fast as parsing the text again
            return ipaddress.IPv4Address(bytes(map(int, value.split(".")))), False
        except ValueError:  # an octet above 255 (bytes() refuses it)
            return None, True
    if ":" in value and _IPV6_CHARS.fullmatch(value):
        try:
            addr = ipaddress.IPv6Address(value)
        except ValueError:
            return None, True
        if "." in value and not _IPV4.fullmatch(value.rsplit(":", 1)[1]):
            return None, True  # embedded IPv4 with leading zeros
        return addr, False
    return None, True


# Header of PostgreSQL's binary `inet` form: family (2 = IPv4, 3 = IPv6), prefix bits, is-cidr, length.
_INET_HEADER = {4: b"\x02\x20\x00\x04", 6: b"\x03\x80\x00\x10"}
_pton = socket.inet_pton
_AF_INET = socket.AF_INET


def inet_wire(value: str | None) -> tuple[bytes | None, bool]:
    """:func:`parse_ip`, with the address as the bytes of PostgreSQL's binary `inet` form.

    The common case, a dotted-quad IPv4 address, is converted by the C library's ``inet_pton``, which
    accepts exactly the IPv4 forms :func:`parse_ip` does (four decimal octets up to 255, no leading
    zeros, nothing else; tests/migrator/test_copy_wire.py compares the two): ten times faster than the
    pattern and an ``IPv4Address``. Everything it refuses goes through :func:`parse_ip`.
    """
    try:
        return _INET_HEADER[4] + _pton(_AF_INET, value), False
    except (OSError, TypeError, ValueError):  # not IPv4 dotted-quad, None, or an embedded NUL
        pass
    address, invalid = parse_ip(value)
    if address is None:
        return None, invalid
    return _INET_HEADER[address.version] + address.packed, False
