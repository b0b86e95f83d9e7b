"""Just enough of the protobuf wire format to build and read the few messages the probes use.

The scanner must not import tensorflow (2+ s and hundreds of MB at start-up), and the messages it needs
are small, so a schema-less codec plus a field-number map per message is all it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class DecodeError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint too long")


def field(number: int, value: int | bytes | str) -> bytes:
    """One encoded field: ints become varints, str and bytes become length-delimited."""
    if isinstance(value, int):
        return encode_varint(number << 3 | VARINT) + encode_varint(value)
    data = value.encode() if isinstance(value, str) else value
    return encode_varint(number << 3 | LEN) + encode_varint(len(data)) + data


@dataclass(frozen=True)
class Fields:
    """A decoded message: field number -> values in wire order (ints for VARINT/I32/I64, bytes for LEN)."""

    values: dict[int, list[int | bytes]]

    def ints(self, number: int) -> list[int]:
        return [v for v in self.values.get(number, []) if isinstance(v, int)]

    def blobs(self, number: int) -> list[bytes]:
        return [v for v in self.values.get(number, []) if isinstance(v, bytes)]

    def int(self, number: int, default: int = 0) -> int:
        found = self.ints(number)
        return found[-1] if found else default

    def signed(self, number: int, default: int = 0) -> int:
        value = self.int(number, default)
        return value - (1 << 64) if value >= 1 << 63 else value

    def str(self, number: int, default: str = "") -> str:
        found = self.blobs(number)
        return found[-1].decode("utf-8", "replace") if found else default

    def messages(self, number: int, limit: int | None = None) -> list[Fields]:
        """The first `limit` (all when None) submessages, decoded: a server decides how many it sends."""
        return [decode(b) for b in self.blobs(number)[:limit]]

    def message(self, number: int) -> Fields:
        found = self.blobs(number)
        return decode(found[-1]) if found else Fields({})


def decode(buf: bytes) -> Fields:
    values: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire_type == VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == I64:
            if pos + 8 > len(buf):
                raise DecodeError("truncated fixed64")
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire_type == I32:
            if pos + 4 > len(buf):
                raise DecodeError("truncated fixed32")
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        elif wire_type == LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise DecodeError("truncated length-delimited field")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")
        values.setdefault(number, []).append(value)
    return Fields(values)


def packed_varints(buf: bytes) -> list[int]:
    """The values of a packed repeated varint field (proto3's default for repeated int64, e.g. a shape)."""
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _read_varint(buf, pos)
        values.append(value)
    return values
