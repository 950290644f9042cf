"""What rowquant's file readers promise for any bytes at all (DESIGN.md sections 3 and 5), as one
check shared by the atheris target (``fuzz_reader.py``) and the test suite
(``tests/test_fuzz_regressions.py``), which replays the committed corpus through it.

Each reader either raises a documented error or returns a result that agrees with an independent
decoding of the same bytes and lies inside the file:

- ``_safetensors.read_header`` on an in-memory stream: ``ValueError``, or a header whose tensors
  cover the data section exactly, each as many bytes as its dtype and shape need, and nothing read
  past the header.
- ``rowquant.load(path, mmap=True)`` and ``mmap=False``: ``ValueError`` naming the file (the same
  one both ways), or the same table both ways, equal to the file's bytes; ``take`` over every row
  equals ``float32((codes - 128) * scales)`` bit for bit, and bags agree with a float64 sum;
  its keys, when the file has them, raise ``ValueError`` naming the file on first use or are the
  strings the file's bytes decode to, each found at its row.
- ``rowquant._sources.FloatSource(path)``: ``ValueError`` naming the file, ``TypeError`` naming a
  non-float dtype, or a 2-D float table inside the file whose rows, read in chunks as float32,
  equal the stored values converted.
- ``rowquant._sources.open_source(path)`` on what starts like a word-vector file (GloVe,
  word2vec text or binary): ``ValueError`` naming the file, or unique words, one per row, and
  rows that read in chunks as finite float32 of the file's shape (or a ``ValueError`` naming
  the file).

Any other exception escapes (a finding), and a broken promise raises :class:`ContractViolation`.
An error message must also be printable text: the CLI writes it to stderr.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np

import rowquant as rq
from rowquant import _safetensors
from rowquant._sources import FloatSource, open_source
from rowquant._text import LINE_BYTES, detect_format

__all__ = ["ContractViolation", "check_bytes", "check_file", "check_header"]

_FLOAT_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}  # BF16 is decoded from its bits
_BAG_CELLS = 1 << 20  # bags allocate (bags, dim) floats even for an empty table: keep them small


class ContractViolation(AssertionError):
    """A reader returned a wrong result or raised an error the contract does not allow."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


def _printable(error: BaseException) -> str:
    message = str(error)
    try:
        message.encode("utf-8")
    except UnicodeEncodeError as problem:
        raise ContractViolation(
            f"{type(error).__name__} message cannot be printed as UTF-8 ({problem}): {message!r}"
        ) from None
    return message


class _Stream(io.BytesIO):
    """A BytesIO that remembers the furthest byte read."""

    furthest = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return chunk


def check_header(data: bytes):
    """``read_header`` on ``data`` in memory; the checked header, or None when it refused."""
    stream = _Stream(data)
    try:
        header = _safetensors.read_header(stream, len(data))
    except ValueError as error:
        _printable(error)
        return None
    (length,) = np.frombuffer(data, "<u8", count=1)
    data_start = 8 + int(length)
    _require(stream.furthest <= data_start, f"read_header read up to byte {stream.furthest}, "
             f"past the end of the header at {data_start}")
    _require(header.file_size == len(data), "Header.file_size is not the file's size")
    _require(all(isinstance(k, str) and isinstance(v, str) for k, v in header.metadata.items()),
             "metadata must map strings to strings")
    covered = data_start
    for name, tensor in sorted(header.tensors.items(), key=lambda item: item[1].start):
        _require(name == tensor.name, f"tensor {name!r} is filed under another name")
        _require(tensor.dtype in _safetensors.DTYPES, f"tensor {name!r}: dtype {tensor.dtype!r}")
        _require(all(type(size) is int and size >= 0 for size in tensor.shape),
                 f"tensor {name!r}: shape {tensor.shape!r}")
        _require(tensor.start == covered, f"{name!r} starts at {tensor.start}, not {covered}")
        needed = math.prod(tensor.shape) * _safetensors.DTYPES[tensor.dtype][1]
        _require(tensor.nbytes == needed, f"tensor {name!r}: {tensor.nbytes} bytes, not {needed}")
        covered = tensor.stop
    _require(covered == len(data), f"the tensors cover {covered} of the file's {len(data)} bytes")
    return header


def _expected_rows(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32((codes - 128) * scales): the float64 product is exact (8 x 24 bits), rounded once."""
    with np.errstate(over="ignore"):  # products past float32's range round to inf, as in rowquant
        return ((codes.astype(np.float64) - 128.0) * scales.astype(np.float64)[:, None]).astype(
            np.float32
        )


def _check_nbit_table(qe, data: bytes, header, path: str, where: str) -> None:
    """A 4-bit or 2-bit table (scheme rowwise-affine-u4-f16 / -u2-f16): its arrays are the
    file's bytes, and take and dequantize give float32(s) * q + float32(c), decoded here from
    the bytes (q unpacked low bits first; the float64 product is exact, then rounded once)."""
    rows, dim = qe.shape
    bits = {"rowwise-affine-u4-f16": 4, "rowwise-affine-u2-f16": 2}.get(
        header.metadata.get("scheme"))
    _require(bits is not None and qe.scheme.bits == bits, f"{where}: scheme of an N-bit table")
    per = 8 // bits
    width = -(-dim // per)
    _require(header.metadata.get("dim") == str(dim), f"{where}: dim is not the file's")
    if "rows" in header.tensors:  # FBGEMM's fused rows: codes, then scale and bias
        fused = header.tensors["rows"]
        _require(fused.shape == (rows, width + 4), f"{where}: rows' shape")
        block = np.frombuffer(data, np.uint8, count=rows * (width + 4),
                              offset=fused.start).reshape(rows, width + 4)
        codes = block[:, :width]
        stored = {name: np.ascontiguousarray(block[:, width + at : width + at + 2]).view("<f2")
                  .reshape(rows) for name, at in (("scales", 0), ("biases", 2))}
    else:  # the first layout: three tensors
        tensors = {name: header.tensors[name] for name in ("scales", "biases", "codes")}
        _require(tensors["codes"].shape == (rows, width), f"{where}: codes' shape")
        stored = {name: np.frombuffer(data, "<f2", count=rows, offset=tensors[name].start)
                  for name in ("scales", "biases")}
        codes = np.frombuffer(data, np.uint8, count=rows * width,
                              offset=tensors["codes"].start).reshape(rows, width)
    _require(np.array_equal(qe.codes, codes), f"{where}: codes differ from the file's bytes")
    for name in ("scales", "biases"):
        array = getattr(qe, name)
        _require(array.dtype == np.float16 and not array.flags.writeable, f"{where}: {name}")
        _require(np.array_equal(np.ascontiguousarray(array).view(np.uint16),
                                stored[name].view("<u2")),
                 f"{where}: {name} differ from the file's bytes")
        _require(bool(np.all(np.isfinite(array))), f"{where}: accepted a non-finite {name[:-1]}")
    _check_keys(qe, data, header, path, where)
    levels = np.zeros((rows, width * per), np.float64)
    for k in range(per):
        levels[:, k::per] = (codes >> (k * bits)) & ((1 << bits) - 1)
    if width * per > dim:
        _require(not levels[:, dim:].any(), f"{where}: accepted nonzero padding bits")
    expected = (levels[:, :dim] * stored["scales"].astype(np.float64)[:, None]
                + stored["biases"].astype(np.float64)[:, None]).astype(np.float32)
    taken = qe.take(np.arange(rows))
    _require(np.array_equal(taken.view(np.uint32), expected.view(np.uint32)),
             f"{where}: take differs from float32(s) * q + float32(c)")
    _require(np.array_equal(qe.dequantize().view(np.uint32), expected.view(np.uint32)),
             f"{where}: dequantize differs from take")
    if rows and rows * dim <= _BAG_CELLS:
        pooled = qe.bag(np.arange(rows), np.array([0]), mode="max")
        _require(np.array_equal(pooled[0], expected.max(axis=0)), f"{where}: bag max")


def _check_table(qe, data: bytes, header, path: str, mmap: bool) -> None:
    rows, dim = qe.shape
    where = f"load(mmap={mmap})"
    _require(header is not None, f"{where} accepted a file that read_header refuses")
    if qe.scheme.kind == "affine":
        _check_nbit_table(qe, data, header, path, where)
        return
    scales_tensor, codes_tensor = header.tensors["scales"], header.tensors["codes"]
    # float32 scales, or 16-bit ones (schemes rowwise-symmetric-u8-bf16 / -f16), decoded here
    stored_dtype, size, scale_dtype = {"F32": ("<f4", 4, np.float32),
                                       "BF16": ("<u2", 2, np.uint16),
                                       "F16": ("<f2", 2, np.float16)}[scales_tensor.dtype]
    _require(qe.codes.dtype == np.uint8 and qe.codes.shape == (rows, dim), f"{where}: codes")
    _require(qe.scales.dtype == scale_dtype and qe.scales.shape == (rows,), f"{where}: scales")
    _require(codes_tensor.shape == (rows, dim) and scales_tensor.shape == (rows,),
             f"{where}: shape {qe.shape} is not the header's")
    _require(8 + size * rows + rows * dim <= len(data),
             f"{where}: {qe.shape} does not fit the file")
    _require(not qe.codes.flags.writeable and not qe.scales.flags.writeable,
             f"{where}: the table's arrays are writable")
    stored_scales = np.frombuffer(data, stored_dtype, count=rows, offset=scales_tensor.start)
    stored_codes = np.frombuffer(data, np.uint8, count=rows * dim, offset=codes_tensor.start)
    _require(np.array_equal(np.ascontiguousarray(qe.scales).view(np.uint8),
                            np.ascontiguousarray(stored_scales).view(np.uint8)),
             f"{where}: scales differ from the file's bytes")
    _require(np.array_equal(qe.codes.reshape(-1), stored_codes),
             f"{where}: codes differ from the file's bytes")
    if scales_tensor.dtype == "BF16":
        scale_values = (stored_scales.astype(np.uint32) << 16).view(np.float32)
    else:
        scale_values = stored_scales.astype(np.float32)
    _require(bool(np.all((scale_values >= 0) & np.isfinite(scale_values))),
             f"{where}: accepted a negative or non-finite scale")

    _check_keys(qe, data, header, path, where)
    _check_norms(qe, data, header, where)
    ids = np.arange(rows)
    expected = _expected_rows(qe.codes, scale_values)
    taken = qe.take(ids)
    _require(taken.dtype == np.float32 and taken.shape == (rows, dim), f"{where}: take's shape")
    _require(np.array_equal(taken.view(np.uint32), expected.view(np.uint32)),
             f"{where}: take differs from float32((codes - 128) * scales)")
    # finite scales give finite rows unless a product leaves float32's range (codes far from
    # 128 times scales near float32's maximum: no quantized table has those)
    magnitude = np.abs(qe.codes.astype(np.float64) - 128) * scale_values.astype(np.float64)[:, None]
    representable = magnitude <= np.finfo(np.float32).max
    _require(bool(np.all(np.isfinite(taken) | ~representable)), f"{where}: take gave inf or NaN")
    _require(np.array_equal(qe.dequantize().view(np.uint32), expected.view(np.uint32)),
             f"{where}: dequantize differs from take")
    if rows == 0 and dim > _BAG_CELLS:
        return
    # every row in one bag, then in two (the second may be empty), summed and averaged
    offsets = np.array([0, rows // 2])
    for mode in ("sum", "mean"):
        pooled = qe.bag(ids, offsets, mode=mode)
        _require(pooled.dtype == np.float32 and pooled.shape == (2, dim), f"{where}: bag's shape")
        wide = expected.astype(np.float64)
        for b, (begin, end) in enumerate(((0, rows // 2), (rows // 2, rows))):
            part = wide[begin:end]
            total = part.sum(axis=0)
            if mode == "mean" and end > begin:
                total /= end - begin
            if not np.all(np.isfinite(part)) or np.any(np.abs(part).sum(axis=0) > 1e38):
                continue  # infinities, or partial sums that may overflow: order decides
            # the bag arithmetic's bound (tests/helpers.py, bag_error_bound): relative to the
            # rows' scales, as the kernels sum unshifted codes and take 128 * sum(scales) once
            steps = float(np.abs(scale_values[ids[begin:end]].astype(np.float64)).sum())
            tolerance = 512 * (len(part) + 1) * 2.0**-24 * steps + 1e-30
            _require(bool(np.all(np.abs(pooled[b] - total) <= tolerance)),
                     f"{where}: bag {b} (mode={mode}) differs from the float64 sum")


def _check_norms(qe, data: bytes, header, where: str) -> None:
    """Stored norms are the file's bytes, none negative or NaN; without them, computed ones
    are the float64 norms of the rows within a float32 step. Dot products on the codes are
    the float64 ones of the rows, rounded once, where those are finite."""
    rows = qe.shape[0]
    norms = qe.norms()
    _require(norms.dtype == np.float32 and norms.shape == (rows,), f"{where}: norms' shape")
    _require(bool(np.all(norms >= 0)), f"{where}: a negative or NaN norm")
    expected = _expected_rows(qe.codes, qe.scale_values()).astype(np.float64)
    if "norms" in header.tensors:
        stored = np.frombuffer(data, "<f4", count=rows, offset=header.tensors["norms"].start)
        _require(np.array_equal(norms.view(np.uint32), stored.view("<u4")),
                 f"{where}: norms differ from the file's bytes")
    elif np.all(np.isfinite(expected)) and np.abs(expected).max(initial=0) < 1e150:
        exact = np.sqrt((expected * expected).sum(axis=1))
        small = exact < 3e38
        step = np.spacing(exact[small].astype(np.float32)).astype(np.float64)
        _require(bool(np.all(np.abs(norms[small] - exact[small]) <= 2 * step)),
                 f"{where}: norms are wrong")
    if not np.all(np.isfinite(expected)):
        return
    query = np.linspace(-1, 1, qe.shape[1], dtype=np.float32)
    exact = expected @ query.astype(np.float64)
    scores = qe.dot(query)
    bound = np.abs(expected) @ np.abs(query.astype(np.float64)) * 2.0**-40
    finite = np.abs(exact) < 3e38
    _require(bool(np.all(np.abs(scores[finite] - exact[finite])
                         <= np.spacing(np.abs(exact[finite]).astype(np.float32)) + bound[finite])),
             f"{where}: dot differs from the float64 dot product of the rows")


def _check_keys(qe, data: bytes, header, path: str, where: str) -> None:
    """A table's keys: none without the key tensors; with them, either a ValueError naming the
    file when they are used (bad offsets, bad UTF-8, a repeated key), or the strings an
    independent decoding of the file's bytes gives, each found at its row."""
    if "keys" not in header.tensors:
        _require(qe.keys is None, f"{where}: keys without key tensors")
        return
    offsets_tensor, keys_tensor = header.tensors["key_offsets"], header.tensors["keys"]
    offsets = np.frombuffer(data, "<i8", count=qe.shape[0] + 1, offset=offsets_tensor.start)
    raw = data[keys_tensor.start : keys_tensor.stop]
    try:
        words = list(qe.keys)
        rows = qe.index(words)
    except ValueError as error:
        message = _printable(error)
        _require(path in message, f"{where}: the keys' error does not name the file: {message!r}")
        return
    bounds = offsets.tolist()
    _require(bounds[0] == 0 and bounds[-1] == len(raw) and bounds == sorted(bounds),
             f"{where}: keys accepted with bad offsets {bounds}")
    decoded = [raw[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
    _require(words == decoded, f"{where}: keys differ from the file's bytes")
    _require(rows.tolist() == list(range(len(words))), f"{where}: keys not found at their rows")


def _check_load(path: str, data: bytes, header) -> None:
    outcomes = []
    for mmap in (True, False):
        try:
            qe = rq.load(path, mmap=mmap)
        except ValueError as error:
            message = _printable(error)
            _require(path in message, f"load(mmap={mmap}): the message does not name the file: "
                     f"{message!r}")
            outcomes.append(("error", message))
            continue
        _check_table(qe, data, header, path, mmap)
        outcomes.append(("table", qe.shape))
        del qe
    _require(outcomes[0] == outcomes[1], f"load with and without mmap disagree: {outcomes}")


def _decoded(data: bytes, source: FloatSource) -> np.ndarray:
    """The table as float32, decoded from ``data`` without rowquant's help."""
    array = source._array
    origin = np.frombuffer(source._buffer, np.uint8, count=1).ctypes.data if data else 0
    offset = array.__array_interface__["data"][0] - origin if array.size else 0
    count = source.rows * source.dim
    _require(0 <= offset and offset + count * array.itemsize <= len(data),
             f"FloatSource's array [{offset}, +{count * array.itemsize}) is outside the file "
             f"of {len(data)} bytes")
    stored = np.frombuffer(data, array.dtype, count=count, offset=offset)
    stored = stored.reshape(array.shape, order="F" if array.flags.f_contiguous and not
                            array.flags.c_contiguous else "C")
    if source._bf16:
        return (stored.astype(np.uint32) << 16).view(np.float32)
    _require(array.dtype.kind == "f", f"FloatSource accepted dtype {array.dtype}")
    with np.errstate(over="ignore"):
        return stored.astype(np.float32)


def _shape(source, reader: str) -> tuple[int, int]:
    """A source's (rows, dim), checked to be non-negative ints."""
    rows, dim = source.rows, source.dim
    _require(type(rows) is int and type(dim) is int and rows >= 0 and dim >= 0,
             f"{reader}: shape ({rows!r}, {dim!r})")
    return rows, dim


def _chunks(rows: int):
    """(start, stop) of the chunks a source is read in: three, so that chunks meet."""
    step = max(1, rows // 3)
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def _require_rows(values: np.ndarray, start: int, stop: int, dim: int, reader: str) -> None:
    _require(values.dtype == np.float32 and values.shape == (stop - start, dim),
             f"{reader}.rows_float32({start}, {stop}) has {values.dtype} {values.shape}")


def _check_float_source(path: str, data: bytes, header) -> None:
    try:
        source = FloatSource(path)
    except ValueError as error:
        message = _printable(error)
        _require(path in message, f"FloatSource: the message does not name the file: {message!r}")
        return
    except TypeError as error:
        message = _printable(error)
        _require(path in message and "dtype" in message,
                 f"FloatSource: a TypeError that names no dtype: {message!r}")
        return
    with source:
        rows, dim = _shape(source, "FloatSource")
        if header is not None and not data.startswith(b"\x93NUMPY"):
            tensor = header.tensors[source.tensor]
            _require(tensor.shape == (rows, dim) and tensor.dtype in ("BF16", *_FLOAT_DTYPES),
                     f"FloatSource: {tensor.describe()} read as ({rows}, {dim})")
        _require(source.nbytes <= len(data), f"FloatSource: {source.nbytes} bytes in a file of "
                 f"{len(data)}")
        expected = _decoded(data, source)
        for start, stop in _chunks(rows):
            values, stored = source.rows_float32(start, stop)
            _require_rows(values, start, stop, dim, "FloatSource")
            _require(stored.shape == values.shape, "rows_float32: stored rows of another shape")
            np.testing.assert_array_equal(values, expected[start:stop],
                                          err_msg=f"rows_float32({start}, {stop})")
            del values, stored
            source.release(start, stop)


def _check_word_vectors(path: str, data: bytes) -> None:
    """A file that starts like a word-vector file: ``ValueError`` naming the file (with the
    line, where one is to blame), or ``rows`` words, unique, and rows that read in chunks as
    finite float32 of the right shape or fail the same way."""
    if detect_format(data[:2 * LINE_BYTES]) is None:  # what open_source reads
        return
    try:
        source = open_source(path)
    except ValueError as error:
        message = _printable(error)
        _require(message.startswith(path), f"open_source: the message does not start with the "
                 f"file: {message!r}")
        return
    with source:
        rows, dim = _shape(source, "open_source")
        _require(source.keys is not None and len(source.keys) == rows,
                 f"open_source: {rows} rows but keys {source.keys!r}")
        words = list(source.keys)
        _require(len(set(words)) == rows, "open_source: a word twice")
        for start, stop in _chunks(rows):
            try:
                values, _ = source.rows_float32(start, stop)
            except ValueError as error:
                message = _printable(error)
                _require(message.startswith(path), f"rows_float32: the message does not start "
                         f"with the file: {message!r}")
                return
            _require_rows(values, start, stop, dim, "open_source")
            _require(bool(np.isfinite(values).all()), f"rows_float32({start}, {stop}): inf/NaN")


def check_file(path: str, data: bytes) -> None:
    """Every reader on the file at ``path``, whose content is ``data``."""
    header = check_header(data)
    _check_load(path, data, header)
    _check_float_source(path, data, header)
    _check_word_vectors(path, data)


def check_bytes(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` (replacing what is there) and check every reader on it."""
    with open(path, "wb") as file:
        file.write(data)
    check_file(os.fspath(path), data)
