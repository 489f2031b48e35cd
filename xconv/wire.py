"""Protobuf wire-format pieces for streaming large messages.

Both backends write their weight files as chunks: small protobuf messages
serialised normally, and weight arrays written straight from their memory
behind hand-made field headers.  The wire format makes this exact: a message
is a sequence of fields in any order; a length-delimited field is its tag
(``field << 3 | 2``), a varint length, then the payload.
"""
from __future__ import annotations

from typing import Sequence, Union

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
