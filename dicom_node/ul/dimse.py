"""DIMSE command sets (PS3.7 section 9/E): decode requests, encode C-ECHO/C-STORE responses.

Why hand-written: a command set is a few implicit-VR little-endian group 0000 elements;
reading them directly is much cheaper than building a pydicom Dataset per instance.
"""

from __future__ import annotations

import struct

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
NO_DATASET = 0x0101

_ELEMENT = struct.Struct("<HHL")
_US = {0x0100, 0x0110, 0x0120, 0x0700, 0x0800, 0x0900, 0x1031}  # unsigned short elements
_UI = {0x0002, 0x1000}  # AffectedSOPClassUID, AffectedSOPInstanceUID
_NAMES = {
    0x0002: "AffectedSOPClassUID", 0x0100: "CommandField", 0x0110: "MessageID",
    0x0700: "Priority", 0x0800: "CommandDataSetType", 0x1000: "AffectedSOPInstanceUID",
    0x1030: "MoveOriginatorApplicationEntityTitle", 0x1031: "MoveOriginatorMessageID",
}


class CommandError(Exception):
    """A command set that cannot be decoded (answered with A-ABORT)."""


def decode_command(raw: bytes | memoryview) -> dict[str, int | str]:
    """Group 0000 elements by keyword (only those the acceptor uses)."""
    out: dict[str, int | str] = {}
    pos, end = 0, len(raw)
    while pos + 8 <= end:
        group, element, length = _ELEMENT.unpack_from(raw, pos)
        value = raw[pos + 8:pos + 8 + length]
        if group != 0x0000 or pos + 8 + length > end:
            raise CommandError(f"bad command element ({group:04X},{element:04X})")
        name = _NAMES.get(element)
        if name is not None:
            if element in _US:
                if length != 2:
                    raise CommandError(f"{name} has length {length}, expected 2")
                out[name] = struct.unpack("<H", value)[0]
            else:
                out[name] = bytes(value).decode("ascii", "replace").strip(" \x00")
        pos += 8 + length
    if pos != end:
        raise CommandError("truncated command set")
    if "CommandField" not in out:
        raise CommandError("command set without (0000,0100) CommandField")
    return out


def _element(element: int, value: bytes) -> bytes:
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def _uid(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _response(field: int, request: dict[str, int | str], status: int,
              comment: str | None = None) -> bytes:
    body = b""
    sop_class = str(request.get("AffectedSOPClassUID", ""))
    if sop_class:
        body += _element(0x0002, _uid(sop_class))
    body += _element(0x0100, struct.pack("<H", field))
    body += _element(0x0120, struct.pack("<H", int(request.get("MessageID", 0))))
    body += _element(0x0800, struct.pack("<H", NO_DATASET))
    body += _element(0x0900, struct.pack("<H", status))
    sop_instance = str(request.get("AffectedSOPInstanceUID", ""))
    if sop_instance:
        body += _element(0x1000, _uid(sop_instance))
    if comment and status not in (0x0000,):
        text = comment.encode("ascii", "replace")[:64]
        body += _element(0x0902, text + (b" " if len(text) % 2 else b""))
    return _element(0x0000, struct.pack("<L", len(body))) + body


def echo_response(request: dict[str, int | str]) -> bytes:
    return _response(C_ECHO_RSP, request, 0x0000)


def store_response(request: dict[str, int | str], status: int, comment: str | None = None) -> bytes:
    """C-STORE-RSP; failures carry an ErrorComment (0000,0902) naming the cause."""
    return _response(C_STORE_RSP, request, status, comment)
