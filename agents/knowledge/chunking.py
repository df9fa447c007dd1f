"""Blocks of a parsed document to chunks of about `size` characters, for embedding.

Chunks end on paragraph boundaries when they can and on sentence boundaries otherwise (a
sentence longer than a chunk is cut between words). Consecutive chunks of the same section
overlap by up to `overlap` characters of whole sentences, so a fact split by a boundary is
still whole in one of them. A chunk never mixes two locations (two pages, two headings);
numbered blocks (text lines, CSV rows) are packed together and cited as a range ("rows
12–20"). CSV rows are records, so they are never repeated as overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents.knowledge.parsers import Block

CHUNK_SIZE = 800
CHUNK_OVERLAP = 150
_NO_OVERLAP_KINDS = frozenset({"row"})
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class Chunk:
    text: str
    location: str


@dataclass(frozen=True)
class _Piece:
    text: str
    block: Block
    starts_paragraph: bool


def split_sentences(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        parts.append(text[start : match.end()].strip())
        start = match.end()
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _wrap(sentence: str, size: int) -> list[str]:
    """Cut an over-long sentence between words (inside a word only if the word is longer)."""
    pieces: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > size:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:size])
            word = word[size:]
        if current and len(current) + 1 + len(word) > size:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def _pieces(blocks: list[Block], size: int) -> list[_Piece]:
    pieces: list[_Piece] = []
    for block in blocks:
        first = True
        for sentence in split_sentences(block.text):
            for part in _wrap(sentence, size) if len(sentence) > size else [sentence]:
                pieces.append(_Piece(part, block, starts_paragraph=first))
                first = False
    return pieces


def _group(block: Block) -> tuple[str, str]:
    """Blocks of one group may share a chunk: the same location, or the same kind of span."""
    return ("span", block.span.kind) if block.span else ("location", block.location)


def _length(pieces: list[_Piece]) -> int:
    return sum(len(p.text) + 2 for p in pieces)


def _text(pieces: list[_Piece]) -> str:
    out = ""
    for index, piece in enumerate(pieces):
        if index:
            out += "\n\n" if piece.starts_paragraph else " "
        out += piece.text
    return out


def _location(pieces: list[_Piece]) -> str:
    spans = [p.block.span for p in pieces if p.block.span is not None]
    if not spans:
        return pieces[0].block.location
    first, last = min(s.first for s in spans), max(s.last for s in spans)
    kind = spans[0].kind
    return f"{kind} {first}" if first == last else f"{kind}s {first}–{last}"


def _tail(pieces: list[_Piece], overlap: int) -> list[_Piece]:
    """The last whole sentences of a chunk that fit in `overlap` characters."""
    block = pieces[-1].block
    if block.span is not None and block.span.kind in _NO_OVERLAP_KINDS:
        return []
    tail: list[_Piece] = []
    for piece in reversed(pieces):
        if _length([piece, *tail]) > overlap:
            break
        tail.insert(0, piece)
    if tail:  # the carried text opens the next chunk as a paragraph of its own
        tail[0] = _Piece(tail[0].text, tail[0].block, starts_paragraph=True)
    return tail


def chunk_blocks(
    blocks: list[Block], *, size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP
) -> list[Chunk]:
    chunks: list[Chunk] = []
    current: list[_Piece] = []

    def close() -> None:
        chunks.append(Chunk(text=_text(current), location=_location(current)))

    for piece in _pieces(blocks, size):
        if current:
            same_group = _group(piece.block) == _group(current[-1].block)
            too_long = _length([*current, piece]) > size
            # Prefer to end at a paragraph: if the whole next paragraph does not fit and the
            # chunk is already half full, close it here rather than mid-paragraph.
            paragraph_break = (
                piece.starts_paragraph
                and _length(current) >= size // 2
                and _length(current) + len(piece.block.text) > size
            )
            if not same_group:
                close()
                current = []
            elif too_long or paragraph_break:
                close()
                carry = _tail(current, overlap)
                current = carry if _length([*carry, piece]) <= size else []
        current.append(piece)
    if current:
        close()
    return chunks
