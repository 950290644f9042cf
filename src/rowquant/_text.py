"""Word-vector files (GloVe text, word2vec and fastText text, word2vec binary): which format a
file is in, told from its content, and what the readers of the formats share.

The formats, by the names ``format=`` takes:

``"glove"``
    No header; one line per word: the word, then its ``D`` values, separated by spaces
    (GloVe's ``glove.6B.50d.txt``). ``D`` is the count of numbers ending the first line.
``"word2vec"``
    A header line ``N D``, then ``N`` lines as in GloVe: the text output of word2vec and
    gensim, and fastText's ``.vec`` files.
``"word2vec-binary"``
    A header line ``N D``, then per entry the word's UTF-8 bytes, a space, ``D`` little-endian
    float32 values (``4 D`` bytes) and usually a newline (word2vec's and gensim's ``.bin``).

Detection (:func:`detect_format`) reads the first line: two integers are a word2vec header,
and the first entry after it is text if its line ends in ``D`` numbers after a word (or all
its fields after the first are numbers), binary otherwise; a word followed by numbers is GloVe. So a GloVe file whose first line is two integers (the word
``"2"`` with one value) reads as word2vec: say ``format="glove"`` to override.

Text lines: values are separated by spaces or tabs (runs of them too); a line's trailing
spaces, tabs and ``\\r`` (CRLF files) are ignored, as are blank lines and a UTF-8 byte-order
mark; a ``\\r`` inside a line is an error (CR-only line ends, old Mac files, are not read). The
vector is the last ``D`` fields of a line and the word everything before them, so a word may
hold spaces (GloVe 840B has some, such as ``". . ."``), except that a word whose last
field is a number makes the line one with too many numbers (an error). Values are parsed as
float64 and rounded once to float32, as ``np.loadtxt(dtype=np.float32)`` and gensim do. Words
must be valid UTF-8 and unique. Errors are ``ValueError`` naming the file and the line (1-based,
as an editor counts them), or for binary files the entry and its byte offset.

Examples
--------
>>> from rowquant._text import detect_format
>>> detect_format(b"the 0.418 0.24968\\nof 0.7 -0.1\\n")
'glove'
>>> detect_format(b"2 2\\nthe 0.418 0.24968\\nof 0.7 -0.1\\n")
'word2vec'
>>> detect_format(b"1 2\\nthe \\x00\\x00\\x80?\\x00\\x00\\x00@\\n")
'word2vec-binary'
>>> detect_format(b"id,name\\n1,2\\n") is None
True
"""

from __future__ import annotations

import contextlib
import mmap as _mmap
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ._chunks import release_pages
from ._keys import Keys, first_repeat

__all__ = ["BOM", "DESCRIPTIONS", "FIELD", "FORMATS", "LINE_BYTES", "SNIFF_BYTES",
           "WordVectorSource", "describe_word", "detect_format", "glove_dim", "is_number",
           "read_head", "split_fields", "unique_keys", "word2vec_header"]

FORMATS = ("glove", "word2vec", "word2vec-binary")
DESCRIPTIONS = {  # as quantize_file's summary and the command show the source's kind
    "glove": "GloVe text",
    "word2vec": "word2vec text",
    "word2vec-binary": "word2vec binary",
}
BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 1 << 20  # read_head reads this much, and more only when a line it needs is longer
LINE_BYTES = 256 << 20  # the longest first line (and entry line) detection reads: memory bound
FIELD = re.compile(rb"[^ \t]+")  # a field of a text line: bytes between spaces and tabs


def split_fields(line: bytes) -> list[bytes]:
    """The fields of a text line: runs of bytes between spaces and tabs, after the trailing
    ``\\r`` and blanks are dropped."""
    return FIELD.findall(line.rstrip(b" \t\r"))


def is_number(field: bytes) -> bool:
    """Whether ``np.loadtxt`` reads ``field`` as a float (Python's ``float`` also takes digit
    separators, ``1_000``, which numpy refuses)."""
    if b"_" in field:
        return False
    try:
        float(field)
    except ValueError:
        return False
    return True


def word2vec_header(line: bytes) -> tuple[int, int] | None:
    """``(N, D)`` when ``line`` is a word2vec header, two non-negative integers, else None."""
    fields = split_fields(line)
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        return int(fields[0]), int(fields[1])
    return None


def glove_dim(line: bytes) -> int:
    """The count of numbers ending a GloVe line, after at least one field for the word (0: the
    line is not a word and numbers)."""
    fields = split_fields(line)
    count = 0
    while count < len(fields) - 1 and is_number(fields[-1 - count]):
        count += 1
    return count


def read_head(file: Any, size: int) -> bytes:
    """The bytes :func:`detect_format` needs of ``file`` (open for reading at its start, of
    ``size`` bytes): its first :data:`SNIFF_BYTES`, or, when the first line, or after a word2vec
    header the line of the first entry, ends later (a GloVe file of 300000 values a row), up to
    that line's end, found in the memory-mapped file and at most :data:`LINE_BYTES` past the
    line's start. A first line holding a zero byte (``.npy``, safetensors) is not text: no more
    is read."""
    head = file.read(SNIFF_BYTES)
    if len(head) >= size:
        return head
    line, newline, rest = head.partition(b"\n")
    if b"\0" in line:
        return head
    if newline:
        header = word2vec_header(line[len(BOM):] if line.startswith(BOM) else line)
        if header is None or b"\n" in rest or b"\0" in rest:  # a binary entry is binary
            return head
    limit = (len(line) + 1 if newline else 0) + LINE_BYTES
    with _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ) as mapped:
        end = mapped.find(b"\n", len(head), limit)
        return mapped[: end + 1 if end >= 0 else limit]


def _first_line(data: bytes) -> tuple[bytes, bytes] | None:
    """(the first line, the bytes after it), or None when no line ends in ``data`` and more
    of the file follows (a line of :data:`LINE_BYTES` or longer)."""
    line, newline, rest = data.partition(b"\n")
    if not newline and len(data) >= LINE_BYTES:
        return None
    return line, rest


def detect_format(head: bytes) -> str | None:
    """The format of a file that starts with ``head`` (as :func:`read_head` reads it: through
    the first line, and after a word2vec header the next; or all of a smaller file), or None
    when it is in none of :data:`FORMATS`."""
    if head.startswith(BOM):
        head = head[len(BOM):]
    split = _first_line(head)
    if split is None or b"\0" in split[0]:
        return None
    line, rest = split
    header = word2vec_header(line)
    if header is not None:
        return "word2vec-binary" if _binary_entry(rest, *header) else "word2vec"
    # told from bytes: a word that is not UTF-8 is the reader's to name, with its line
    return "glove" if glove_dim(line) else None


def _binary_entry(rest: bytes, rows: int, dim: int) -> bool:
    """Whether the first entry after a word2vec header is binary: it is text when its line
    ends in ``dim`` numbers after a word (which may hold spaces, as the text reader reads it),
    or when all its fields after the first are numbers (a text line with the wrong count, for
    the text reader to report); with no entries or no values there is nothing to tell apart."""
    if rows == 0 or dim == 0 or not rest.strip():
        return False
    fields = split_fields(rest.partition(b"\n")[0])
    if len(fields) > dim and all(is_number(field) for field in fields[-dim:]):
        return False
    return not (len(fields) > 1 and all(is_number(field) for field in fields[1:]))


def describe_word(word: bytes) -> str:
    """A word for a message, as text (undecodable bytes shown escaped)."""
    return repr(word.decode("utf-8", "backslashreplace"))


def unique_keys(words: list[bytes], path: str, place: Callable[[int], str]) -> Keys:
    """The keys of ``words`` (UTF-8 bytes, one per row), checked: valid UTF-8 and no word
    twice. ``place(row)`` says where a row is in the file at ``path`` (``"line 17"``)."""
    try:
        # the newline keeps a word's last bytes from making a character with the next's first
        b"\n".join(words).decode("utf-8")
    except UnicodeDecodeError:
        for row, word in enumerate(words):
            try:
                word.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path}, {place(row)}: the word {word!r} is not valid UTF-8 "
                    f"({error.reason} at byte {error.start} of the word)"
                ) from None
    # a set first: no int per word, as first_repeat's dict keeps
    repeat = first_repeat(words) if len(set(words)) != len(words) else None
    if repeat is not None:
        first, row = repeat
        raise ValueError(
            f"{path}, {place(row)}: the word {describe_word(words[row])} is there a second "
            f"time, first on {place(first)}; the words of a table must be unique"
        )
    return Keys.from_utf8(words)


class WordVectorSource:
    """A word-vector file open for reading in row chunks: what :class:`rowquant._sources.
    FloatSource` offers for arrays, for a file that must be parsed. Subclasses scan the file
    when opened (shape, words, where each row starts) and parse rows on demand in ``_read``.

    ``nbytes`` is the size of the file; ``keys`` the words, one per row; ``dtype_name`` the
    format as the command's summary shows it (``"GloVe text"``). With ``finite`` (the default)
    a NaN or infinite value is an error naming its line, as quantization needs.
    """

    tensor: str | None = None

    def __init__(self, path: str, file: Any, size: int, format: str, finite: bool = True):
        self.path = path
        self.label = path
        self.format = format
        self.dtype_name = DESCRIPTIONS[format]
        self.nbytes = size
        self._size = size
        self._finite = finite
        self._map = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
        self._bytes = np.frombuffer(self._map, dtype=np.uint8)
        try:
            self.rows, self.dim, self.keys, self._starts = self._scan()
        except BaseException:
            self.close()
            raise

    def _scan(self) -> tuple[int, int, Keys, np.ndarray]:
        """(rows, dim, keys, the byte where each row starts and one more: where the last ends)."""
        raise NotImplementedError

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as parsed: float64 (text) or float32 (binary), C order."""
        raise NotImplementedError

    def place(self, row: int) -> str:
        """Where ``row`` is in the file, for a message: ``"line 17"``."""
        return self.line(int(self._starts[row]))

    def line(self, offset: int) -> str:
        """The line of byte ``offset``, ``"line L"``, counted from 1 as an editor does (only
        for messages: this reads the file up to there)."""
        step, lines = 1 << 24, 1
        for begin in range(0, offset, step):
            lines += self._map[begin : min(offset, begin + step)].count(b"\n")
        return f"line {lines}"

    def error(self, place: str, message: str) -> ValueError:
        """The ValueError for ``message`` about ``place`` (``"line 17"``) of the file."""
        return ValueError(f"{self.path}, {place}: {message}")

    def rows_float32(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [start, stop) as float32 (parsed as float64 and rounded once), and as parsed
        (for error messages). Chunks may be read in any order."""
        stored = self._read(start, stop)
        with np.errstate(over="ignore"):  # past float32's range: reported below
            values = stored.astype(np.float32, copy=False)
        if self._finite and values.size:
            finite = np.isfinite(values)
            if not finite.all():
                self._nonfinite(start, stored, int(np.argmin(finite)))
        return values, stored

    def _nonfinite(self, start: int, stored: np.ndarray, flat: int) -> None:
        row, column = divmod(flat, self.dim)
        value = float(stored[row, column])
        found = f"{value!r}, which overflows float32," if np.isfinite(value) else str(value)
        raise self.error(
            self.place(start + row),
            f"the word {self.keys[start + row]!r} has {found} as value {column + 1} (row "
            f"{start + row}, column {column}): rowquant quantizes finite values only",
        )

    def release(self, start: int, stop: int) -> None:
        """Drop the bytes of rows [start, stop) from this process's memory (they stay in the
        file and the page cache)."""
        release_pages(self._bytes[self._starts[start] : self._starts[stop]])

    def close(self) -> None:
        self._bytes = None  # type: ignore[assignment]  # closed: nothing may read it again
        with contextlib.suppress(BufferError):  # a caller still holds a view: the GC closes it
            self._map.close()

    def __enter__(self) -> WordVectorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
