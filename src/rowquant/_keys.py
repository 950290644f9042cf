"""The words (keys) of a table: one string per row, stored as a file stores them.

A vocabulary of 400000 words is 400000 Python strings and a dict, some 60 MB and a few hundred
milliseconds to build; a file opened by memory map should not pay that before the first lookup.
:class:`Keys` therefore holds the keys as the file does, their UTF-8 bytes back to back and
``N + 1`` int64 offsets (key ``i`` is ``utf8[offsets[i]:offsets[i + 1]]``), decodes one key when
one is asked for, and builds the word-to-row dict only on the first lookup by word.

Examples
--------
>>> from rowquant._keys import Keys
>>> keys = Keys.from_strings(["king", "queen", "köln"])
>>> len(keys), keys[2], keys[-1], list(keys[:2])
(3, 'köln', 'köln', ['king', 'queen'])
>>> keys.offsets.tolist(), bytes(keys.utf8)
([0, 4, 9, 14], b'kingqueenk\\xc3\\xb6ln')
>>> keys.index("queen"), keys.rows(["köln", "king"]).tolist()
(1, [2, 0])
>>> keys.index("prince")
Traceback (most recent call last):
    ...
rowquant._keys.MissingKeyError: 'prince' is not a key of this table (3 keys)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

__all__ = ["Keys", "MissingKeyError", "RESERVED_METADATA", "check_metadata", "first_repeat",
           "keys_for_rows"]

# the metadata names the file format itself writes; free-form metadata may not use them
RESERVED_METADATA = frozenset({"format", "version", "scheme", "bias"})


class MissingKeyError(KeyError, ValueError):
    """A word that is not a key of the table: a ``KeyError`` (as a dict raises) whose message
    prints as written (``KeyError`` itself shows the repr of its argument), and a ``ValueError``
    (as ``list.index`` raises)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _describe(word: Any) -> str:
    return repr(word) if not isinstance(word, bytes) else repr(word.decode("utf-8", "replace"))


class Keys(Sequence[str]):
    """The keys of a table, one string per row, in row order; unique.

    Build them with :meth:`from_strings`; a file's keys come as ``Keys(utf8, offsets)``:
    ``utf8`` the keys' UTF-8 bytes back to back (uint8, 1-D) and ``offsets`` int64 ``(N + 1,)``
    starting at 0, non-decreasing and ending at ``len(utf8)``. Nothing is decoded until asked
    for: ``keys[i]`` decodes one key, and the first lookup by word (:meth:`index`, ``in``,
    :attr:`mapping`, :meth:`rows`) decodes them all once and builds the dict, which is kept.
    """

    __slots__ = ("_utf8", "_offsets", "_mapping", "_strings", "_lock", "_checked",
                 "_source")

    def __init__(self, utf8: np.ndarray, offsets: np.ndarray, *, check: bool = True,
                 source: str | None = None) -> None:
        utf8 = np.asarray(utf8)
        offsets = np.asarray(offsets)
        if utf8.dtype != np.uint8 or utf8.ndim != 1:
            raise TypeError(f"key bytes must be a 1-D uint8 array, got {utf8.dtype} {utf8.shape}")
        if offsets.dtype.kind not in "iu" or offsets.ndim != 1 or offsets.shape[0] < 1:
            raise TypeError(
                f"key offsets must be a 1-D integer array of N + 1 entries, got "
                f"{offsets.dtype} {offsets.shape}"
            )
        self._utf8 = utf8
        self._offsets = offsets
        self._mapping: dict[str, int] | None = None
        self._strings: list[str] | None = None
        self._lock = threading.Lock()
        self._checked = False
        self._source = f"{source}: " if source else ""  # starts the messages of later checks
        if check:
            self._check()

    def _check(self) -> None:
        """Check the offsets (once): reads 8 bytes per key, none of the keys' bytes. A file's
        keys are checked on first use rather than when it is opened, so that opening a file
        reads nothing of its vocabulary (the kernel's readahead from the offsets would bring
        the keys' bytes in too)."""
        if self._checked:
            return
        utf8, offsets = self._utf8, self._offsets
        if offsets[0] != 0 or offsets[-1] != utf8.shape[0]:
            raise ValueError(
                f"{self._source}key offsets must start at 0 and end at the {utf8.shape[0]} bytes of the keys, "
                f"they go from {offsets[0]} to {offsets[-1]}"
            )
        steps = np.diff(offsets)
        if steps.size and steps.min() < 0:
            i = int(np.argmax(steps < 0))
            raise ValueError(
                f"{self._source}key offsets must not decrease: offsets[{i + 1}] = {offsets[i + 1]} is below "
                f"offsets[{i}] = {offsets[i]}"
            )
        self._checked = True

    @classmethod
    def from_strings(cls, words: Iterable[str]) -> Keys:
        """Keys from strings (a list, a numpy array of ``str``, a :class:`Keys`, ...), checked:
        ``TypeError`` for a key that is not a string, ``ValueError`` for one that is repeated
        or cannot be written as UTF-8 (a lone surrogate). The dict is built now (the check
        needs it) and kept."""
        if isinstance(words, Keys):
            return words
        if isinstance(words, (str, bytes)):
            raise TypeError("keys must be a sequence of strings, not one string")
        strings: list[str] = []
        mapping: dict[str, int] = {}
        encoded: list[bytes] = []
        for i, word in enumerate(words):
            if not isinstance(word, str):
                raise TypeError(f"keys[{i}] is a {type(word).__name__}, keys must be strings")
            word = str(word)  # a numpy str_ becomes a plain str
            first = mapping.setdefault(word, i)
            if first != i:
                raise ValueError(f"keys[{i}] = {word!r} repeats keys[{first}]: keys must be unique")
            try:
                encoded.append(word.encode("utf-8"))
            except UnicodeEncodeError as error:
                raise ValueError(f"keys[{i}] = {word!r} cannot be written as UTF-8: {error}") from None
            strings.append(word)
        keys = cls.from_utf8(encoded)
        keys._strings, keys._mapping = strings, mapping
        return keys

    @classmethod
    def from_utf8(cls, words: Sequence[bytes]) -> Keys:
        """Keys from their UTF-8 bytes, one ``bytes`` per row, not checked (the caller has
        checked them, and says where a bad one is better than this could)."""
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        offsets = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.frombuffer(b"".join(words), dtype=np.uint8), offsets)

    @property
    def utf8(self) -> np.ndarray:
        """The keys' UTF-8 bytes back to back (uint8), as the file stores them."""
        self._check()
        return self._utf8

    @property
    def offsets(self) -> np.ndarray:
        """``N + 1`` offsets into :attr:`utf8`: key ``i`` is ``utf8[offsets[i]:offsets[i+1]]``."""
        self._check()
        return self._offsets

    def __len__(self) -> int:
        return int(self._offsets.shape[0] - 1)

    def _decode(self, i: int) -> str:
        self._check()
        start, stop = int(self._offsets[i]), int(self._offsets[i + 1])
        raw = self._utf8[start:stop].tobytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{self._source}key {i} ({raw!r}) is not valid UTF-8: {error}") from None

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"key index {index} is out of range for {n} keys")
        i = index % n
        strings = self._strings
        return strings[i] if strings is not None else self._decode(i)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word in self._built()

    def tolist(self) -> list[str]:
        """All keys as a list of strings (decoded once and kept)."""
        self._built()
        assert self._strings is not None
        return list(self._strings)

    @property
    def mapping(self) -> Mapping[str, int]:
        """Key -> row, read-only (built on first use)."""
        return MappingProxyType(self._built())

    def _built(self) -> dict[str, int]:
        mapping = self._mapping
        if mapping is not None:
            return mapping
        with self._lock:  # two threads asking at once build it once
            if self._mapping is None:
                self._check()
                data = self._utf8.tobytes()
                bounds = self._offsets.tolist()
                try:
                    strings = [
                        data[start:stop].decode("utf-8")
                        for start, stop in zip(bounds[:-1], bounds[1:])
                    ]
                except UnicodeDecodeError:
                    strings = [self._decode(i) for i in range(len(self))]  # names the bad key
                built = dict(zip(strings, range(len(strings))))
                repeat = first_repeat(strings) if len(built) != len(strings) else None
                if repeat is not None:
                    first, i = repeat
                    raise ValueError(
                        f"{self._source}key {i} ({strings[i]!r}) repeats key {first}: the keys "
                        "are not unique"
                    )
                self._strings = strings
                self._mapping = built
            return self._mapping

    def index(self, value: Any, start: int = 0, stop: int = sys.maxsize) -> int:
        """The row of the key ``value`` (as ``list.index``, the keys being unique). Raises
        :class:`MissingKeyError` (a ``KeyError``, and a ``ValueError`` as ``list.index`` raises)
        when it is not a key (or not between ``start`` and ``stop``)."""
        row = self._built().get(value) if isinstance(value, str) else None
        if row is None or row not in range(len(self))[start:stop]:
            raise MissingKeyError(f"{_describe(value)} is not a key of this table ({len(self)} keys)")
        return row

    def rows(self, words: Iterable[str]) -> NDArray[np.int64]:
        """The rows of ``words`` (an int64 array, in their order). Raises
        :class:`MissingKeyError` naming the first word that is not a key, and its position."""
        mapping = self._built()
        if isinstance(words, (str, bytes)):
            raise TypeError("rows takes a list of words; index takes one")
        rows: list[int] = []
        for position, word in enumerate(words):
            row = mapping.get(word) if isinstance(word, str) else None
            if row is None:
                what = "is not a key of this table" if isinstance(word, str) else "is not a string"
                raise MissingKeyError(
                    f"words[{position}] = {_describe(word)} {what} ({len(self)} keys)"
                )
            rows.append(row)
        return np.array(rows, dtype=np.int64)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keys):
            return NotImplemented
        return bool(
            np.array_equal(self.offsets, other.offsets) and np.array_equal(self.utf8, other.utf8)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n = len(self)
        shown = ", ".join(repr(self[i]) for i in range(min(n, 3)))
        more = ", ..." if n > 3 else ""
        return f"Keys([{shown}{more}], {n} keys)"

    def __reduce__(self) -> tuple[type[Keys], tuple[np.ndarray, np.ndarray]]:
        return (type(self), (np.array(self.utf8), np.array(self.offsets)))


def first_repeat(items: Sequence[Hashable]) -> tuple[int, int] | None:
    """``(first, second)``: the positions of the first item that is there a second time, and of
    that second time; None when all differ."""
    seen: dict[Hashable, int] = {}
    for position, item in enumerate(items):
        first = seen.setdefault(item, position)
        if first != position:
            return first, position
    return None


def keys_for_rows(keys: Iterable[str] | None, rows: int) -> Keys | None:
    """``keys`` checked (:meth:`Keys.from_strings`) and counted against a table of ``rows``."""
    if keys is None:
        return None
    checked = Keys.from_strings(keys)
    if len(checked) != rows:
        raise ValueError(f"keys has {len(checked)} entries but the table has {rows} rows")
    return checked


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Free-form metadata for a file, checked: strings to strings, none of the names the
    format writes itself (:data:`RESERVED_METADATA`)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict of strings, got {type(metadata).__name__}")
    checked: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(
                f"metadata must map strings to strings, got {name!r}: {type(value).__name__}"
            )
        if name in RESERVED_METADATA:
            reserved = ", ".join(sorted(RESERVED_METADATA))
            raise ValueError(f"metadata name {name!r} is the file format's own ({reserved})")
        checked[name] = value
    return checked
