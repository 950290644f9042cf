"""GloVe and word2vec/fastText text files, read in two passes with memory bounded by a chunk.

The first pass (when the file is opened) finds each line's start, its word and its count of
fields with numpy over 8 MB blocks of the memory-mapped file: only lines that are not
``word v1 ... vD`` with single spaces (a word with spaces, tabs, runs of blanks, too few or too
many fields) are split in Python. It keeps the words, one int64 per row (where the row starts)
and the rows that need the slow path. The second pass parses the numbers of a chunk of rows
with ``np.loadtxt`` (numpy's C parser, float64), the word column skipped; a run that it refuses
is parsed line by line to name the line and the field at fault. See :mod:`rowquant._text` for
the formats' rules.

Examples
--------
>>> import os, tempfile
>>> from rowquant._text_lines import TextVectors
>>> path = os.path.join(tempfile.mkdtemp(), "v.txt")
>>> with open(path, "wb") as f:
...     _ = f.write(b"the 0.418 0.25\\r\\nof -0.5 1e-3\\r\\n\\n")
>>> with open(path, "rb") as f, TextVectors(path, f, os.path.getsize(path), "glove") as source:
...     values, parsed = source.rows_float32(0, 2)
...     source.rows, source.dim, list(source.keys), values.tolist()
(2, 2, ['the', 'of'], [[0.4180000126361847, 0.25], [-0.5, 0.0010000000474974513]])
"""

from __future__ import annotations

import io

import numpy as np

from ._chunks import release_pages
from ._keys import Keys
from ._text import (
    BOM, FIELD, WordVectorSource, describe_word, glove_dim, is_number, unique_keys,
    word2vec_header,
)

__all__ = ["TextVectors", "split_line"]

BLOCK_BYTES = 8 << 20  # bytes scanned at a time by the first pass
RUN_BYTES = 4 << 20  # bytes of text given to numpy's parser at a time (about, on average)
_TRIM_STEPS = 8  # trailing blanks stripped with numpy up to this many, then in Python


def split_line(line: bytes, dim: int) -> tuple[bytes, list[bytes]]:
    """The word of a text line and the fields after it, the vector when there are ``dim`` of
    them. The vector is the last ``dim`` fields and the word the bytes before them (it may hold
    spaces), unless the line has too few fields (the word is then the first field) or the word
    would end in a number (the numbers are then all the fields that end the line: too many)."""
    line = line.rstrip(b" \t\r")
    spans = [match.span() for match in FIELD.finditer(line)]
    if len(spans) < dim + 1:
        cut = 1
    else:
        cut = len(spans) - dim
        while cut > 1 and is_number(line[spans[cut - 1][0] : spans[cut - 1][1]]):
            cut -= 1
    word = line[spans[0][0] : spans[cut - 1][1]] if spans else b""
    return word, [line[begin:end] for begin, end in spans[cut:]]


def _trimmed_ends(block: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Where each line ends once its trailing spaces, tabs and ``\\r`` are dropped."""
    blank = (block == 32) | (block == 9) | (block == 13)
    trimmed = ends.copy()
    todo = np.flatnonzero(trimmed > starts)
    for _ in range(_TRIM_STEPS):
        todo = todo[blank[trimmed[todo] - 1]]
        if not todo.size:
            return trimmed
        trimmed[todo] -= 1
        todo = todo[trimmed[todo] > starts[todo]]
    for i in todo.tolist():  # a line ending in many blanks
        line = block[starts[i] : trimmed[i]].tobytes()
        trimmed[i] = starts[i] + len(line.rstrip(b" \t\r"))
    return trimmed


class TextVectors(WordVectorSource):
    """A GloVe (``format="glove"``) or word2vec/fastText text (``"word2vec"``) file; see
    :class:`rowquant._text.WordVectorSource`."""

    def _scan(self) -> tuple[int, int, Keys, np.ndarray]:
        begin = len(BOM) if self._map[: len(BOM)] == BOM else 0
        newline = self._map.find(b"\n", begin)
        first_end = newline if newline >= 0 else self._size
        first = self._map[begin:first_end]
        declared = None
        if self.format == "word2vec":
            header = word2vec_header(first)
            if header is None:
                raise self.error(
                    "line 1", f"{describe_word(first[:80])} is not a word2vec header, two "
                    "integers 'N D' (a file without one is GloVe: format='glove')"
                )
            declared, dim = header
            self._dim_source = f"the header (line 1) says {dim}"
            begin = first_end + 1
        else:
            dim = glove_dim(first)
            if not dim:
                raise self.error(
                    "line 1", f"{describe_word(first[:80])} is not a word followed by numbers, "
                    "as GloVe's lines are"
                )
            self._dim_source = f"line 1 has {dim}"
        starts, words, self._irregular = self._scan_lines(begin, dim)
        self._starts = starts
        self.dim = dim
        if declared is not None and len(words) != declared:
            raise self._count_error(declared, len(words), words)
        return len(words), dim, unique_keys(words, self.path, self.place), starts

    def _count_error(self, declared: int, found: int, words: list[bytes]) -> ValueError:
        if found < declared:
            return self.error(
                "line 1", f"the header says {declared} words, but the file holds {found}"
            )
        return self.error(
            self.place(declared),
            f"the word {describe_word(words[declared])} is word {declared + 1}, but the header "
            f"(line 1) says the file holds {declared}",
        )

    def _scan_lines(self, begin: int, dim: int) -> tuple[np.ndarray, list[bytes], np.ndarray]:
        """(where each row starts and where the last ends, the words, the rows the fast path
        cannot read), for the lines from byte ``begin``."""
        starts: list[np.ndarray] = []
        irregular: list[np.ndarray] = []
        words: list[bytes] = []
        position = begin
        while position < self._size:
            end = self._block_end(position)
            block = self._bytes[position:end]
            block_starts, block_words, odd = self._scan_block(block, position, dim)
            starts.append(block_starts + position)
            irregular.append(odd + len(words))
            words.extend(block_words)
            release_pages(block)
            position = end
        starts.append(np.array([self._size], dtype=np.int64))
        return (np.concatenate(starts).astype(np.int64), words,
                np.concatenate(irregular).astype(np.int64) if irregular else
                np.zeros(0, np.int64))

    def _block_end(self, position: int) -> int:
        """The end of the block from ``position``: after the last newline within
        :data:`BLOCK_BYTES`, or after the first one beyond (a longer line), or the file's end."""
        end = min(self._size, position + BLOCK_BYTES)
        if end == self._size:
            return end
        newline = self._map.rfind(b"\n", position, end)
        if newline < 0:
            newline = self._map.find(b"\n", end)
        return self._size if newline < 0 else newline + 1

    def _scan_block(self, block: np.ndarray, base: int,
                    dim: int) -> tuple[np.ndarray, list[bytes], np.ndarray]:
        """(the start of each line with a word, relative to the block; the words; the lines
        that are not ``word v1 ... vD`` with single spaces, by their row in the block)."""
        ends = np.flatnonzero(block == 10)
        if block.size and block[-1] != 10:
            ends = np.append(ends, block.size)
        starts = np.zeros_like(ends)
        starts[1:] = ends[:-1] + 1
        trimmed = _trimmed_ends(block, starts, ends)
        content = trimmed > starts  # blank lines hold no row
        starts, trimmed = starts[content], trimmed[content]
        spaces = np.flatnonzero(block == 32)
        first_space = np.searchsorted(spaces, starts)
        space_count = np.searchsorted(spaces, trimmed) - first_space
        others = np.flatnonzero((block == 9) | (block == 13))  # tabs, and \r inside a line
        other_count = np.searchsorted(others, trimmed) - np.searchsorted(others, starts)
        regular = (space_count == dim) & (other_count == 0) & (block[starts] != 32)
        if dim and spaces.size:
            word_ends = spaces[np.minimum(first_space, spaces.size - 1)]
        else:
            word_ends = trimmed
        data = self._map[base : base + block.size]
        words = [data[s:e] for s, e in zip(starts.tolist(), word_ends.tolist())]
        odd = np.flatnonzero(~regular)
        for i in odd.tolist():
            line = data[starts[i] : trimmed[i]]
            if b"\r" in line:  # an old Mac file would otherwise read silently as one line
                raise self.error(
                    self.line(base + int(starts[i])), "the line holds a carriage return (\\r) "
                    "before its end: CR-only line ends are not read (make them \\n or \\r\\n)"
                )
            words[i], numbers = split_line(line, dim)
            if len(numbers) != dim:
                raise self._ragged(base + int(starts[i]), words[i], len(numbers))
        return starts, words, odd

    def _ragged(self, offset: int, word: bytes, count: int) -> ValueError:
        return self.error(
            self.line(offset),
            f"the word {describe_word(word)} has {count} value{'s' * (count != 1)}, but "
            f"{self._dim_source}",
        )

    # --------------------------------------------------------------------- the second pass

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.dim), dtype=np.float64)
        if not self.dim:
            return out
        low, high = np.searchsorted(self._irregular, [start, stop])
        row = start
        for odd in [*self._irregular[low:high].tolist(), stop]:
            for first in range(row, odd, self._run_rows):
                last = min(odd, first + self._run_rows)
                self._parse_run(first, last, out[first - start : last - start])
            if odd < stop:
                out[odd - start] = self._parse_row(odd)
            row = odd + 1
        return out

    @property
    def _run_rows(self) -> int:
        """Rows parsed by one call of numpy's parser: about :data:`RUN_BYTES` of text, so that
        its buffers stay small whatever the chunk."""
        text_bytes = int(self._starts[-1] - self._starts[0])
        return max(1, int(RUN_BYTES * self.rows / max(text_bytes, 1)))

    def _parse_run(self, start: int, stop: int, out: np.ndarray) -> None:
        """Parse rows [start, stop), all ``word v1 ... vD`` with single spaces, into ``out``
        with numpy's parser, or line by line if it refuses them (to say where and why)."""
        text = self._map[self._starts[start] : self._starts[stop]]
        try:
            values = np.loadtxt(
                io.BytesIO(text), dtype=np.float64, delimiter=" ", comments=None,
                quotechar=None, usecols=range(1, self.dim + 1), encoding="latin-1", ndmin=2,
            )
        except ValueError:
            values = None
        if values is not None and values.shape == out.shape:
            out[...] = values
            return
        for row in range(start, stop):
            out[row - start] = self._parse_row(row)

    def _parse_row(self, row: int) -> np.ndarray:
        """One row's values, from its own line: a ValueError names the line and the field."""
        offset = int(self._starts[row])
        line = self._map[offset : int(self._starts[row + 1])].partition(b"\n")[0]
        word, numbers = split_line(line, self.dim)
        if len(numbers) != self.dim:
            raise self._ragged(offset, word, len(numbers))
        try:
            return np.loadtxt(
                io.BytesIO(b" ".join(numbers)), dtype=np.float64, delimiter=" ",
                comments=None, quotechar=None, encoding="latin-1", ndmin=1,
            )
        except ValueError as error:
            reason = str(error)
        for position, field in enumerate(numbers, 1):
            if not is_number(field):
                reason = f"{describe_word(field)} (value {position}) is not a number"
                break
        raise self.error(self.line(offset), f"the word {describe_word(word)}: {reason}")
