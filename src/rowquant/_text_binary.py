"""word2vec binary files (``format="word2vec-binary"``), read with memory bounded by a chunk.

Layout: a header line ``N D``, then ``N`` entries, each the word's UTF-8 bytes, a space, ``D``
little-endian float32 values (``4 D`` bytes) and, as word2vec and gensim write them, a newline.
A word ends at its first space, as gensim reads it, when the ``4 D`` bytes after that space
are followed by a newline or the end of the file (a file with the newlines), or when no later
space is (gensim 4 writes no newlines: the next word follows the vector). Otherwise the word
ends at the first later space followed by ``4 D`` bytes and a newline (word2vec's files hold
words with spaces): a word holds no newline, and the vector must end where the entries left to
read still fit in the rest of the file, each at least a space, ``4 D`` bytes and a newline (the
last may lack it), so that a space in a vector or before the last word is never taken. The
first entry tells whether the file has the newlines; in a file that has them, an entry with no
such space is an error. After ``N`` entries only blanks may follow.

The first pass walks the entries (one ``find`` per entry) and keeps the words and where each
vector starts; the second copies the vectors of a chunk out of the memory-mapped file.
Problems are ``ValueError`` naming the entry (1-based) and its byte offset.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from rowquant._text_binary import BinaryVectors
>>> path = os.path.join(tempfile.mkdtemp(), "v.bin")
>>> vectors = np.array([[1.5, -2], [0.25, 8]], "<f4")
>>> with open(path, "wb") as f:
...     _ = f.write(b"2 2\\n" + b"".join(w + b" " + v.tobytes() + b"\\n"
...                                    for w, v in zip([b"new york", b"of"], vectors)))
>>> with open(path, "rb") as f, BinaryVectors(path, f, os.path.getsize(path),
...                                           "word2vec-binary") as source:
...     values, _ = source.rows_float32(0, 2)
...     list(source.keys), values.tolist()
(['new york', 'of'], [[1.5, -2.0], [0.25, 8.0]])
"""

from __future__ import annotations

import numpy as np

from ._chunks import release_pages
from ._keys import Keys
from ._text import BOM, WordVectorSource, describe_word, unique_keys, word2vec_header

__all__ = ["BinaryVectors"]

NEWLINE = 10
RELEASE_BYTES = 8 << 20  # the first pass drops the pages it has read every this many bytes


class BinaryVectors(WordVectorSource):
    """A word2vec binary file; see :class:`rowquant._text.WordVectorSource`. ``_starts`` holds
    where each vector starts, and one more entry: the end of the last entry."""

    def place(self, row: int) -> str:
        return self._entry_place(row, int(self._word_starts[row]))

    @staticmethod
    def _entry_place(row: int, offset: int) -> str:
        return f"entry {row + 1} (byte {offset})"

    def _scan(self) -> tuple[int, int, Keys, np.ndarray]:
        begin = len(BOM) if self._map[: len(BOM)] == BOM else 0
        newline = self._map.find(b"\n", begin)
        header = word2vec_header(self._map[begin : newline if newline >= 0 else self._size])
        if header is None or newline < 0:
            raise self.error("line 1", "is not a word2vec header, two integers 'N D'")
        rows, dim = header
        self._width = 4 * dim
        self._declared = rows
        # an entry takes 1 + 4 D bytes at least: a header promising more entries than fit gets
        # the arrays for those that fit, and the scan stops with an error at the first missing
        capacity = min(rows, (self._size - newline - 1) // (1 + self._width))
        words: list[bytes] = []
        starts = np.empty(capacity + 1, dtype=np.int64)
        word_starts = np.empty(capacity, dtype=np.int64)
        position = released = newline + 1
        newlines = None  # whether entries end with a newline: told by the first
        for row in range(rows):
            word_end, vector_end, newlines = self._entry(row, position, newlines)
            words.append(self._map[position:word_end])
            word_starts[row] = position
            starts[row] = word_end + 1
            position = vector_end + 1 if newlines and vector_end < self._size else vector_end
            if position - released > RELEASE_BYTES:  # the scan keeps no more of the file mapped
                release_pages(self._bytes[released:position])
                released = position
        starts[rows] = position
        self._word_starts = word_starts
        self._starts = starts
        rest = self._map[position : position + 4096]
        if rest.strip():
            raise self.error(
                f"byte {position}", f"the header (line 1) says the file holds {rows} words, "
                f"but more follows after word {rows}"
            )
        return rows, dim, unique_keys(words, self.path, self.place), starts

    def _entry(self, row: int, position: int, newlines: bool | None) -> tuple[int, int, bool]:
        """(where the word of the entry at ``position`` ends, where its vector ends, whether it
        ends with a newline: the first entry tells, ``newlines`` None, and the others follow)."""
        if position >= self._size:
            raise self.error(
                self._entry_place(row, position),
                f"the file ends after {row} words, but its header (line 1) says it holds "
                f"{self._declared}",
            )
        space = self._map.find(b" ", position)
        if space < 0:
            raise self.error(
                self._entry_place(row, position),
                f"{describe_word(self._map[position : position + 40])} has no space after the "
                "word (is the file truncated?)",
            )
        if newlines is not False:
            found = self._newline_space(position, space, self._declared - row - 1)
            if found is not None:
                return found, found + 1 + self._width, True
        vector_end = space + 1 + self._width
        if vector_end > self._size:
            raise self.error(
                self._entry_place(row, position),
                f"the word {describe_word(self._map[position:space])} needs {self._width} "
                f"bytes of float32 values, the file has {self._size - space - 1} left (it is "
                "truncated)",
            )
        if newlines:
            raise self.error(
                self._entry_place(row, position),
                f"no space after {describe_word(self._map[position:space])} is followed by "
                f"{self._width} bytes of float32 values and a newline, as in every entry before",
            )
        return space, vector_end, False

    def _newline_space(self, position: int, space: int, remaining: int) -> int | None:
        """Where the word of an entry with a newline ends, ``remaining`` entries after it; or
        None. The first space (``space``) when its vector is followed by a newline or the end
        of the file; else the first later space whose vector is followed by a newline (or the
        end of the file, none remaining) and ends where the ``remaining`` entries still fit,
        before the first newline (a word holds none)."""
        width = self._width
        end = space + 1 + width
        if end > self._size:
            return None
        if end == self._size or self._map[end] == NEWLINE:
            return space
        # each entry left takes a space, its vector and a newline at least (the last may lack
        # the newline): the vector ends by last_end, where a newline or the end of the file is
        last_end = self._size - remaining * (width + 2)
        limit = last_end - width  # a space from here on leaves too little room
        newline = self._map.find(b"\n", position, max(limit, position))
        if newline >= 0:
            limit = newline
        space = self._map.find(b" ", space + 1, limit) if space + 1 < limit else -1
        while space >= 0:
            end = space + 1 + width
            if end == self._size or self._map[end] == NEWLINE:
                return space
            space = self._map.find(b" ", space + 1, limit)
        return None

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        vectors = self._bytes
        width = self._width
        for i, offset in enumerate(self._starts[start:stop].tolist()):
            out[i] = vectors[offset : offset + width].view("<f4")
        return out

    def release(self, start: int, stop: int) -> None:
        """Drop the bytes of rows [start, stop) from this process's memory."""
        if stop > start:
            release_pages(self._bytes[self._word_starts[start] : self._starts[stop]])
