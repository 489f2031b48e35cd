"""Protobuf wire-format pieces for streaming large messages.

Both backends write their weight files as chunks: small protobuf messages
serialised normally, and weight arrays written straight from their memory
behind hand-made field headers.  The wire format makes this exact: a message
is a sequence of fields in any order; a length-delimited field is its tag
(``field << 3 | 2``), a varint length, then the payload.
"""
from __future__ import annotations

from typing import Iterator, Sequence, Union

Chunk = Union[bytes, memoryview]


def varint(v: int) -> bytes:
    if v < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def header(field: int, length: int) -> bytes:
    """Tag and length of a length-delimited field whose payload follows."""
    return varint((field << 3) | 2) + varint(length)


def field(field_number: int, payload: bytes) -> bytes:
    return header(field_number, len(payload)) + payload


def nested(field_number: int, chunks: Sequence[Chunk]) -> list[Chunk]:
    """A length-delimited field whose payload is ``chunks`` (not joined)."""
    return [header(field_number, sum(len(c) for c in chunks)), *chunks]


# --------------------------------------------------------------------------- decoding
def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, next position); raises ValueError on a truncated or over-long varint."""
    result = shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """One protobuf message's fields in order: (field number, wire type, value).

    Varints come back as ints, everything else (length-delimited payloads,
    fixed32/64's raw 4/8 bytes) as a memoryview slice of ``buf``, uncopied.
    Raises ValueError on malformed input.
    """
    buf = memoryview(buf)
    pos, n = 0, len(buf)
    while pos < n:
        try:
            key, pos = read_varint(buf, pos)
        except ValueError as e:
            raise ValueError(f"{e} at byte {pos}") from None
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ValueError(f"field number 0 at byte {pos}")
        if wt in (0, 2):  # a varint: the value, or the payload's length
            try:
                v, pos = read_varint(buf, pos)
            except ValueError as e:
                raise ValueError(f"field {num}: {e}") from None
            if wt == 0:
                yield num, wt, v
                continue
            if pos + v > n:
                raise ValueError(f"field {num} (length {v}) at byte {pos} runs past the end ({n} bytes)")
            yield num, wt, buf[pos:pos + v]
            pos += v
        elif wt in (1, 5):
            w = 8 if wt == 1 else 4
            if pos + w > n:
                raise ValueError(f"field {num}: truncated fixed{w * 8} at byte {pos}")
            yield num, wt, buf[pos:pos + w]
            pos += w
        else:
            raise ValueError(f"field {num}: unsupported wire type {wt} at byte {pos} (groups/garbage)")


def decode_fields(buf: bytes | memoryview) -> dict[int, list[int | bytes]]:
    """One protobuf message's fields: number -> values in order.

    Varints come back as ints, length-delimited fields as bytes (nested
    messages, strings, packed arrays: the caller knows which), fixed32/64
    as their raw 4/8 bytes.  Raises ValueError on malformed input.
    """
    out: dict[int, list[int | bytes]] = {}
    for num, _, v in iter_fields(buf):
        out.setdefault(num, []).append(v if isinstance(v, int) else bytes(v))
    return out


def packed_varints(v: int | bytes | memoryview | list[int | bytes]) -> list[int]:
    """A repeated varint field's values, packed (bytes) or not (ints)."""
    vals = v if isinstance(v, list) else [v]
    out: list[int] = []
    for x in vals:
        if isinstance(x, int):
            out.append(x)
        else:
            pos = 0
            while pos < len(x):
                y, pos = read_varint(x, pos)
                out.append(y)
    return out
