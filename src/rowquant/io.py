"""Quantized tables in files: save, load (memory-mapped), and streaming quantization of float
tables larger than memory.

A table is a safetensors file (DESIGN.md section 5): ``scales`` (F32 ``[N]``) then ``codes``
(U8 ``[N, D]``), metadata ``format=rowquant, version=1, scheme=rowwise-symmetric-u8, bias=128``.
The header is padded so that the codes start on a 64-byte boundary of the file. Files are written
to a temporary name in the target folder, flushed to disk and renamed into place: a failed or
interrupted write never leaves a partial file at the target path, and a file already there stays
as it was. A replaced file keeps its permissions (and owner and group where permitted), a
symlink is written through to its target, devices, pipes and sockets are refused, and the
temporary file of a writer killed mid-write is deleted by the next write to the same path
(:func:`atomic_output` has the details).

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> import rowquant as rq
>>> E = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "table.safetensors")
>>> rq.quantize(E).save(path)
>>> qe = rq.load(path)                      # memory-mapped: only looked-up rows are read
>>> np.array_equal(qe.take([3, 1]), rq.quantize(E).take([3, 1]))
True
>>> np.save(os.path.join(folder, "E.npy"), E)
>>> summary = rq.quantize_file(os.path.join(folder, "E.npy"), os.path.join(folder, "s.safetensors"))
>>> summary.rows, summary.dim
(1000, 64)
>>> open(os.path.join(folder, "s.safetensors"), "rb").read() == open(path, "rb").read()
True
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap as _mmap
import os
import shutil
import stat
import sys
import tempfile
import time
import tokenize
from dataclasses import dataclass

try:
    import fcntl
except ImportError:  # not POSIX: no locks, and no clean-up of abandoned temporary files
    fcntl = None  # type: ignore[assignment]

import numpy as np

from . import _api, _checks, _safetensors
from .report import ErrorAccumulator, ErrorReport
from .table import QuantizedEmbedding

__all__ = ["QuantizeSummary", "load", "quantize_file", "save"]

METADATA = {
    "format": "rowquant",
    "version": "1",
    "scheme": "rowwise-symmetric-u8",
    "bias": "128",
}
CODES_ALIGNMENT = 64  # a cache line: rows whose width is a multiple of it then take whole lines
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
DEFAULT_CHUNK_BYTES = 32 << 20  # float32 bytes of input per chunk when chunk_rows is not given


def table_header(rows: int, dim: int) -> bytes:
    """The header bytes of a rowquant file for a table of ``rows`` x ``dim``."""
    tensors = {"scales": ("F32", (rows,)), "codes": ("U8", (rows, dim))}
    return _safetensors.encode_header(tensors, METADATA, "codes", CODES_ALIGNMENT)


# ----------------------------------------------------------------------------- writing

# Temporary files are named ".{name}.XXXXXXXX.partial" beside the file they will replace, where
# XXXXXXXX is tempfile.mkstemp's eight random characters. Only names of exactly this form are
# ever considered stale (see _remove_abandoned_partials).
_PARTIAL_SUFFIX = ".partial"
_RANDOM_LENGTH = 8
_RANDOM_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_SPECIAL_FILES = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def _new_file_mode() -> int:
    """0o666 less the process umask, read without changing it (os.umask would, for all
    threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is neither a regular file nor a folder."""
    for test, kind in _SPECIAL_FILES:
        if test(mode):
            return kind
    return None


def _destination(path: str) -> tuple[str, str, os.stat_result | None]:
    """The file that writing ``path`` replaces, with every symlink followed; how to name it in
    messages; and its status (None when it does not exist yet). Raises for paths that cannot
    name a regular file."""
    if path == "":
        raise ValueError("the output path is empty; give a file name")
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it is a folder")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        # "out/" names a folder; writing the file "out" instead would surprise
        raise ValueError(f"cannot write {path}: a path ending in {path[-1]!r} names a folder, "
                         "not a file")
    # Following the links here and renaming over the final target keeps a symlink a symlink:
    # renaming over the link itself would replace it with a regular file.
    target = os.path.realpath(path)
    shown = f"{path} (a link to {target})" if os.path.islink(path) else path
    try:
        existing = os.stat(target)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OSError(
                errno.ELOOP, f"cannot write {path}: its symbolic links loop (or nest too deep)"
            ) from None
        existing = None  # missing (or unreachable: creating the temporary file says why)
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"cannot write {shown}: it is a folder")
        kind = _special_kind(existing.st_mode)
        if kind is not None:
            # renaming over a device or a pipe would replace it with a regular file (as root,
            # "-o /dev/null" would destroy /dev/null): refuse it, as shutil.copyfile does pipes
            raise shutil.SpecialFileError(
                f"cannot write {shown}: it is {kind}, not a regular file"
            )
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(
                errno.ENOTDIR, f"cannot write {shown}: {folder} is not a folder"
            )
        raise FileNotFoundError(errno.ENOENT, f"cannot write {shown}: no folder {folder}")
    return target, shown, existing


def _is_partial_name(name: str, basename: str) -> bool:
    """Whether ``name`` is exactly a temporary file name of :func:`atomic_output` for a file
    called ``basename``: ``.{basename}.`` + eight of mkstemp's random characters + ``.partial``.
    The fixed length keeps the temporary files of ``a.safetensors`` apart from those of
    ``a.safetensors.data``."""
    prefix = f".{basename}."
    if len(name) != len(prefix) + _RANDOM_LENGTH + len(_PARTIAL_SUFFIX):
        return False
    if not (name.startswith(prefix) and name.endswith(_PARTIAL_SUFFIX)):
        return False
    return set(name[len(prefix) : len(prefix) + _RANDOM_LENGTH]) <= _RANDOM_CHARACTERS


def _remove_if_abandoned(path: str) -> bool:
    """Delete the temporary file ``path`` if no writer holds its lock; whether it was deleted.

    A live writer holds an exclusive flock on its temporary file until it has renamed it into
    place, and the kernel drops the lock when the writer dies however it dies (kill -9
    included). Any doubt (no permission, no locking on this filesystem, the name now naming
    another file) leaves the file where it is.
    """
    # O_NONBLOCK: should the name be a pipe by now, opening it must not wait for a writer.
    # Read-write first: on NFS, flock is a POSIX write lock, which needs a descriptor open for
    # writing; a read-only file (a replaced 0444 table) can still be opened for reading.
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for access in (os.O_RDWR, os.O_RDONLY):
        try:
            fd = os.open(path, access | flags)
            break
        except PermissionError:
            continue
        except OSError:
            return False
    else:
        return False
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live writer, or this filesystem cannot lock
            return False
        try:
            current = os.lstat(path)
        except OSError:
            return False
        if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
            return False  # renamed into place or replaced since it was opened
        try:
            os.unlink(path)
        except OSError:
            return False
        return True
    finally:
        os.close(fd)  # drops the lock: a writer racing for this file then sees it unlinked


def _remove_abandoned_partials(folder: str, basename: str) -> None:
    """Delete the temporary files that writers of ``folder/basename`` killed mid-write (kill -9,
    power loss) left behind: a kill cannot clean up, and each one may be as large as the
    table."""
    if fcntl is None:
        return
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if _is_partial_name(name, basename):
            _remove_if_abandoned(os.path.join(folder, name))


def _locked_partial(shown: str, target: str) -> tuple[int, str]:
    """A new temporary file beside ``target``, opened and locked: (descriptor, path)."""
    folder, basename = os.path.split(target)
    for _attempt in range(100):
        try:
            fd, temporary = tempfile.mkstemp(
                dir=folder, prefix=f".{basename}.", suffix=_PARTIAL_SUFFIX
            )
        except OSError as error:
            raise type(error)(
                error.errno,
                f"cannot write {shown}: cannot create a file in {folder} ({error.strerror})",
            ) from None
        if fcntl is not None:
            try:
                # blocking: only a cleaner can hold it now, for the moment it takes to unlink
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass  # no locks on this filesystem: cleaners cannot lock it either, nor delete it
        # A cleaner may have locked and deleted the file between mkstemp and flock, when it
        # looked abandoned: writing it would then be lost at the rename. Start over.
        if os.fstat(fd).st_nlink > 0:
            return fd, temporary
        os.close(fd)
    raise OSError(
        errno.EAGAIN, f"cannot write {shown}: its temporary files in {folder} keep disappearing"
    )


def _chown(fd: int, owner: int, group: int) -> bool:
    """os.fchown, False where it is not permitted: only root may give a file away, a user may
    set only one of their groups, and ids a user namespace does not map cannot be set."""
    try:
        os.fchown(fd, owner, group)
    except OSError as error:
        if error.errno in (errno.EPERM, errno.EACCES, errno.EINVAL):
            return False
        raise
    return True


def _take_over_ownership(fd: int, existing: os.stat_result | None) -> None:
    """Give the new file the permission bits, owner and group of the file it replaces, so that
    saving over a private (0600) file does not publish it; a new file gets 0666 less the
    umask, as open() would give it."""
    if existing is None:
        os.fchmod(fd, _new_file_mode())
        return
    created = os.fstat(fd)
    if (created.st_uid, created.st_gid) != (existing.st_uid, existing.st_gid):
        if not _chown(fd, existing.st_uid, existing.st_gid):
            _chown(fd, -1, existing.st_gid)
    # after fchown, which clears the set-user-ID and set-group-ID bits
    os.fchmod(fd, stat.S_IMODE(existing.st_mode))


def _check_still_replaceable(shown: str, target: str) -> None:
    """Refuse the rename if a special file or a symlink has taken the target's place since the
    write began: renaming would destroy it."""
    try:
        now = os.lstat(target)
    except OSError:
        return
    kind = _special_kind(now.st_mode) or ("a symbolic link" if stat.S_ISLNK(now.st_mode) else None)
    if kind is not None:
        raise shutil.SpecialFileError(
            f"cannot write {shown}: it became {kind} while it was being written"
        )


@contextlib.contextmanager
def atomic_output(path):
    """A raw file descriptor to write ``path`` through, replacing it only once complete.

    The data goes to a temporary file beside the file being replaced, named
    ``.{name}.XXXXXXXX.partial``; when the block ends normally it is fsynced and renamed over
    the target, and the folder is fsynced, so the new file is durable. When the block raises,
    the temporary file is deleted and the target is as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Its folder must exist.

        - A file already there keeps its permission bits, and its owner and group where the
          process may set them; a new file gets ``0o666`` less the umask.
        - A symbolic link is followed (through a chain of links) and its final target is
          replaced, in the target's folder: the link stays a link, to the new file. A dangling
          link creates its target when the target's folder exists.
        - A character or block device, a named pipe or a socket (directly or through a link)
          is refused: renaming over it would replace it with a regular file.
        - Renaming breaks hard links: other names of the old file keep the old contents.

    Yields
    ------
    int
        The descriptor of the temporary file, open for reading and writing (``os.pwrite``).

    Raises
    ------
    ValueError
        ``path`` is empty, or ends in a path separator (a folder's name).
    IsADirectoryError
        ``path`` is a folder.
    shutil.SpecialFileError
        ``path`` is (or links to) a device, a named pipe or a socket; an ``OSError``.
    OSError
        The folder is missing or not writable, the links form a loop, the disk is full...

    Notes
    -----
    The writer holds an exclusive ``fcntl.flock`` on its temporary file from creating it until
    it is renamed, and the kernel releases it when the process dies, even by ``kill -9``. So
    before writing, each writer deletes the temporary files of earlier writers of the same
    target that it can lock (those writers died mid-write: their files could be as large as
    the table), and leaves those whose lock is held (a live writer). Only names of exactly the
    form above are touched. A writer whose fresh temporary file a cleaner deleted before it
    could lock it sees the file unlinked (``st_nlink == 0``) and makes another. On a filesystem
    without ``flock`` nothing is locked and nothing is cleaned up.

    Examples
    --------
    >>> import os, tempfile
    >>> from rowquant import io
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.bin")
    >>> with io.atomic_output(path) as fd:
    ...     io._write_all(fd, b"complete", 0)
    >>> open(path, "rb").read()
    b'complete'
    >>> with io.atomic_output(""):
    ...     pass
    Traceback (most recent call last):
    ValueError: the output path is empty; give a file name
    """
    path = os.fsdecode(os.fspath(path))
    target, shown, existing = _destination(path)
    folder = os.path.dirname(target)
    _remove_abandoned_partials(folder, os.path.basename(target))
    fd, temporary = _locked_partial(shown, target)
    try:  # the descriptor, and with it the lock, is kept until the rename is done
        try:
            _take_over_ownership(fd, existing)
            yield fd
            try:
                os.fsync(fd)
                _check_still_replaceable(shown, target)
                os.replace(temporary, target)
            except OSError as error:
                if error.strerror is None:
                    raise
                # the system's message would name the temporary file, which is about to go
                raise type(error)(error.errno, f"cannot write {shown}: {error.strerror}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):  # make the rename itself durable
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)


def _write_all(fd: int, data, offset: int) -> None:
    """Write all of ``data`` (a buffer) at ``offset``; os.pwrite may write less than asked."""
    view = memoryview(data)
    if view.nbytes == 0:
        return
    view = view.cast("B")
    while view.nbytes:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _little_endian_f32(scales: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(scales, dtype="<f4")


def save(path, table: QuantizedEmbedding) -> None:
    """Write ``table`` to ``path`` as a rowquant safetensors file, atomically.

    The file holds ``scales`` (F32 ``[N]``) then ``codes`` (U8 ``[N, D]``) with rowquant's
    metadata, and loads with ``safetensors.numpy.load_file`` as well as :func:`load`.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write. Its folder must exist. A file already there is replaced only once the
        new one is completely written, and the new file keeps its permission bits (and owner
        and group where permitted); a new file gets ``0o666`` less the umask. A symbolic link
        is written through: its target is replaced and the link stays. See
        :func:`atomic_output`.
    table : QuantizedEmbedding

    Raises
    ------
    TypeError
        ``table`` is not a :class:`QuantizedEmbedding`.
    ValueError
        ``path`` is empty or ends in a path separator.
    OSError
        The folder is missing or not writable, ``path`` is a folder, or a device, named pipe
        or socket (``shutil.SpecialFileError``; it is left untouched), the disk is full, ...;
        nothing is left at ``path`` (a file that was there is unchanged).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.eye(3, dtype=np.float32))
    >>> path = os.path.join(tempfile.mkdtemp(), "eye.safetensors")
    >>> rq.save(path, qe)
    >>> rq.load(path).codes
    array([[255, 128, 128],
           [128, 255, 128],
           [128, 128, 255]], dtype=uint8)
    """
    if not isinstance(table, QuantizedEmbedding):
        raise TypeError(f"table must be a rowquant.QuantizedEmbedding, got {type(table).__name__}")
    codes, scales = table.codes, table.scales
    rows, dim = codes.shape
    header = table_header(rows, dim)
    with atomic_output(path) as fd:
        _write_all(fd, header, 0)
        _write_all(fd, _little_endian_f32(scales), len(header))
        offset = len(header) + 4 * rows
        if codes.flags.c_contiguous:
            _write_all(fd, codes, offset)
        else:  # rows with a stride: a bounded copy at a time
            step = max(1, DEFAULT_CHUNK_BYTES // max(dim, 1))
            for start in range(0, rows, step):
                block = np.ascontiguousarray(codes[start : start + step])
                _write_all(fd, block, offset + start * dim)


# ----------------------------------------------------------------------------- reading


def _rowquant_tensors(header: _safetensors.Header):
    """The checked scales and codes tensors of a rowquant file's header."""
    fmt = header.metadata.get("format")
    names = ", ".join(t.describe() for _, t in sorted(header.tensors.items())) or "none"
    if fmt != "rowquant":
        raise ValueError(
            f"not a rowquant table (metadata format is {fmt!r}; tensors: {names}); "
            "make one with rowquant.quantize_file or 'rowquant quantize'"
        )
    version = header.metadata.get("version")
    if version != METADATA["version"]:
        raise ValueError(
            f"rowquant format version {version!r} is not one this rowquant reads "
            f"(it reads version {METADATA['version']})"
        )
    for key in ("scheme", "bias"):
        if header.metadata.get(key) != METADATA[key]:
            raise ValueError(
                f"unknown quantization {key} {header.metadata.get(key)!r} "
                f"(this rowquant knows {METADATA[key]!r})"
            )
    if set(header.tensors) != {"scales", "codes"}:
        raise ValueError(f"a rowquant table holds the tensors scales and codes, this one {names}")
    scales, codes = header.tensors["scales"], header.tensors["codes"]
    if scales.dtype != "F32" or len(scales.shape) != 1:
        raise ValueError(f"scales must be F32 [N], got {scales.dtype} {list(scales.shape)}")
    if codes.dtype != "U8" or len(codes.shape) != 2:
        raise ValueError(f"codes must be U8 [N, D], got {codes.dtype} {list(codes.shape)}")
    if scales.shape[0] != codes.shape[0]:
        raise ValueError(
            f"scales has {scales.shape[0]} rows but codes has {codes.shape[0]}: they must match"
        )
    if 4 * codes.shape[1] > sys.maxsize:  # an empty table can claim any width
        raise ValueError(f"codes has {codes.shape[1]} columns, too many for a row of float32")
    return scales, codes


def _read_into(file, array: np.ndarray, offset: int) -> None:
    if array.size == 0:
        return
    view = memoryview(array).cast("B")
    file.seek(offset)
    while view.nbytes:
        count = file.readinto(view)
        if not count:
            raise ValueError("the file ended early (it changed while being read)")
        view = view[count:]


def load(path, *, mmap: bool = True, validate: bool = True) -> QuantizedEmbedding:
    """Open a table written by :func:`save` or :func:`quantize_file`.

    Parameters
    ----------
    path : str or os.PathLike
    mmap : bool, default True
        Map the file into memory: ``codes`` and ``scales`` are zero-copy read-only views of it,
        opening takes milliseconds whatever the size, and only the rows that lookups touch are
        read from disk (the operating system caches them). With ``False`` the file is read into
        memory. A mapped file must not be truncated or rewritten in place while it is open
        (:func:`save` replaces files by renaming, which is safe).
    validate : bool, default True
        Check that every scale is finite and non-negative, which reads the scales (4 bytes per
        row, not the codes). ``False`` skips that for files you trust.

    Returns
    -------
    QuantizedEmbedding

    Raises
    ------
    ValueError
        The file is not a rowquant table, or is truncated or corrupted: every length, dtype,
        shape and offset in its header is checked against the file before anything is read.
    OSError
        The file cannot be opened.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import rowquant as rq
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> rq.quantize(np.arange(12, dtype=np.float32).reshape(3, 4)).save(path)
    >>> qe = rq.load(path)
    >>> qe
    QuantizedEmbedding(rows=3, dim=4, 24 B, 2.0x smaller than float32)
    >>> qe.codes.flags.writeable
    False
    >>> np.array_equal(rq.load(path, mmap=False).codes, qe.codes)
    True
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            header = _safetensors.read_header(file, size)
            scales_tensor, codes_tensor = _rowquant_tensors(header)
        except ValueError as error:
            raise ValueError(f"{os.fspath(path)}: {error}") from None
        rows, dim = codes_tensor.shape
        if mmap:
            buffer = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
            scales = _safetensors.array_view(buffer, scales_tensor)
            codes = _safetensors.array_view(buffer, codes_tensor)
        else:
            scales = np.empty(rows, dtype="<f4")
            codes = _checks.cache_aligned_empty((rows, dim), np.uint8)
            _read_into(file, scales, scales_tensor.start)
            _read_into(file, codes, codes_tensor.start)
    if not scales.dtype.isnative or scales.ctypes.data % scales.itemsize:
        # another writer may leave the scales off a 4-byte boundary: the C kernels read them as
        # float32, so they get an aligned copy (4 bytes per row)
        scales = scales.astype(np.float32)
    try:
        codes, scales = _checks.codes_and_scales(codes, scales, check_values=validate)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None
    return QuantizedEmbedding._from_checked(codes, scales)


# ----------------------------------------------------------------------------- float sources


def release_pages(rows: np.ndarray) -> None:
    """Drop the memory pages under ``rows`` (a contiguous view of a memory-mapped file, else
    nothing happens) from this process's resident memory: streaming through a mapped table then
    keeps it bounded by the chunk. The data stays in the file; touching it again reads it back."""
    base = rows
    while isinstance(base, np.ndarray):
        base = base.base
    buffer = base.obj if isinstance(base, memoryview) else base
    if not isinstance(buffer, _mmap.mmap) or rows.size == 0 or not rows.flags.c_contiguous:
        return
    if not hasattr(buffer, "madvise"):
        return
    origin = np.frombuffer(buffer, dtype=np.uint8, count=1).ctypes.data
    first = rows.ctypes.data - origin
    page = _mmap.PAGESIZE
    begin = first // page * page
    end = (first + rows.nbytes) // page * page  # the partial last page may hold the next rows
    if end > begin:
        with contextlib.suppress(OSError, ValueError):
            buffer.madvise(_mmap.MADV_DONTNEED, begin, end - begin)



class FloatSource:
    """A 2-D float table in a ``.npy`` or ``.safetensors`` file, memory-mapped and read in row
    chunks as float32. ``release`` drops rows already processed from this process's memory, so
    streaming through a table larger than memory keeps memory bounded by the chunk."""

    def __init__(self, path, tensor: str | None = None):
        self.path = os.fspath(path)
        with open(self.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            is_npy = file.read(6) == b"\x93NUMPY"
            try:
                if is_npy:
                    if tensor is not None:
                        raise ValueError(
                            f"a tensor name ({tensor!r}) applies to safetensors files, and this "
                            "is a .npy file"
                        )
                    shape, fortran, dtype, offset = self._npy_header(file, size)
                    self.tensor = None
                    self.dtype_name = dtype.name
                else:
                    shape, fortran, dtype, offset = self._safetensors_tensor(file, size, tensor)
            except (ValueError, TypeError) as error:
                # not type(error): subclasses such as UnicodeEncodeError take other arguments
                kind = TypeError if isinstance(error, TypeError) else ValueError
                raise kind(f"{self.path}: {error}") from None
            self._buffer = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
        self.rows, self.dim = shape
        self.nbytes = self.rows * self.dim * dtype.itemsize
        self._array = np.ndarray(
            shape, dtype=dtype, buffer=self._buffer, offset=offset, order="F" if fortran else "C"
        )
        self._fortran = fortran and self.rows > 1 and self.dim > 1
        self.label = self.path if self.tensor is None else f"tensor {self.tensor!r} of {self.path}"

    @staticmethod
    def _npy_header(file, size):
        file.seek(0)
        version = np.lib.format.read_magic(file)
        try:
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
            else:
                raise ValueError(f".npy format version {version} is not supported")
        except (
            SyntaxError, TypeError, MemoryError, RecursionError, UnicodeError, tokenize.TokenError
        ) as error:
            # numpy parses the header with ast.literal_eval (and tokenize) and np.dtype, whose
            # errors on hostile text get out as these rather than as numpy's ValueError
            raise ValueError(
                f"the .npy header cannot be parsed ({type(error).__name__}: {error})"
            ) from None
        offset = file.tell()
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise TypeError(
                f"the array has dtype {dtype}; quantize needs float16, float32 or float64"
            )
        if len(shape) != 2:
            raise ValueError(f"the array has shape {shape}; quantize needs a 2-D (rows, dim) one")
        # numpy's reader lets negative sizes and True through, and np.ndarray refuses them
        if any(type(size) is not int or size < 0 for size in shape) or (
            math.prod(size for size in shape if size) * dtype.itemsize > sys.maxsize
        ):
            raise ValueError(f"the array's shape {shape} is not a valid one")
        needed = offset + shape[0] * shape[1] * dtype.itemsize
        if size < needed:
            raise ValueError(f"the file has {size} bytes but its array needs {needed} (truncated)")
        return shape, fortran, dtype, offset

    def _safetensors_tensor(self, file, size, name):
        try:
            header = _safetensors.read_header(file, size)
        except ValueError as error:
            raise ValueError(f"not a .npy file, nor a readable safetensors file: {error}") from None
        listing = ", ".join(t.describe() for _, t in sorted(header.tensors.items()))
        if name is None:
            if len(header.tensors) != 1:
                raise ValueError(
                    f"the file holds {len(header.tensors)} tensors; name the one to use "
                    f"(tensors: {listing or 'none'})"
                )
            (tensor,) = header.tensors.values()
        elif name not in header.tensors:
            raise ValueError(f"no tensor named {name!r} (tensors: {listing or 'none'})")
        else:
            tensor = header.tensors[name]
        if tensor.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"tensor {tensor.name!r} has dtype {tensor.dtype}; quantize needs "
                f"a float tensor ({', '.join(FLOAT_DTYPES)})"
            )
        if len(tensor.shape) != 2:
            raise ValueError(
                f"tensor {tensor.name!r} has shape {list(tensor.shape)}; quantize needs a 2-D "
                "(rows, dim) one"
            )
        self.tensor = tensor.name
        self.dtype_name = tensor.dtype.lower() if tensor.dtype == "BF16" else np.dtype(
            _safetensors.DTYPES[tensor.dtype][0]
        ).name
        dtype = np.dtype("<u2" if tensor.dtype == "BF16" else _safetensors.DTYPES[tensor.dtype][0])
        self._bf16 = tensor.dtype == "BF16"
        return tensor.shape, False, dtype, tensor.start

    _bf16 = False

    def rows_float32(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [start, stop) as float32 with contiguous rows (a view when the file holds native
        float32 in C order), and the same rows as stored (for error messages)."""
        stored = self._array[start:stop]
        if self._bf16:
            values = _safetensors.bf16_to_float32(stored)
            return values, values
        return _checks.float_matrix(stored), stored

    def release(self, start: int, stop: int) -> None:
        """Drop rows [start, stop) from this process's resident memory (they stay in the file
        and the page cache)."""
        if not self._fortran:
            release_pages(self._array[start:stop])

    def close(self) -> None:
        self._array = None
        with contextlib.suppress(BufferError):  # a caller still holds a view: the GC closes it
            self._buffer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class QuantizeSummary:
    """What :func:`quantize_file` did: the table's shape, the sizes before and after, the time
    taken, and the error report when one was asked for."""

    source: str
    output: str
    tensor: str | None
    rows: int
    dim: int
    source_dtype: str
    source_bytes: int
    output_bytes: int
    seconds: float
    report: ErrorReport | None = None


def _chunk_rows(chunk_rows, dim: int) -> int:
    if chunk_rows is None:
        return max(1, DEFAULT_CHUNK_BYTES // (4 * max(dim, 1)))
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)):
        raise TypeError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows}")
    return int(chunk_rows)


def _progress_callback(progress, total: int, description: str):
    """(update(done), close()) for progress=None/False, True (a tqdm bar on stderr) or a
    callable taking (rows_done, rows_total)."""
    if progress is None or progress is False:
        return (lambda done: None), (lambda: None)
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="rows", unit_scale=True, desc=description, file=sys.stderr,
                   dynamic_ncols=True, leave=False)
        last = [0]

        def update(done):
            bar.update(done - last[0])
            last[0] = done

        return update, bar.close
    if callable(progress):
        return (lambda done: progress(done, total)), (lambda: None)
    raise TypeError(f"progress must be None, a bool or a callable, got {type(progress).__name__}")


def quantize_file(
    src,
    dst,
    *,
    tensor: str | None = None,
    chunk_rows: int | None = None,
    progress=None,
    threads: int | None = None,
    report: bool = False,
) -> QuantizeSummary:
    """Quantize the float table in ``src`` into a rowquant file ``dst``, chunk by chunk.

    The output is byte for byte what ``rq.quantize(table).save(dst)`` writes, but memory stays
    bounded by one chunk, not the table: the input is memory-mapped and rows already quantized
    are released as the work moves on, and the output is written as it is produced.

    Parameters
    ----------
    src : str or os.PathLike
        A ``.npy`` file (float16, float32 or float64; recognised by its content) or a
        ``.safetensors`` file with a 2-D F16, BF16, F32 or F64 tensor.
    dst : str or os.PathLike
        The output file, written atomically as by :func:`save` (permissions of a file already
        there kept, symlinks written through, devices and pipes refused). If an earlier run
        writing ``dst`` was killed (``kill -9``, out of memory), its hidden
        ``.NAME.XXXXXXXX.partial`` file is deleted now; those of runs still writing are left.
    tensor : str, optional
        The tensor of a safetensors file to quantize; may be left out when it holds only one.
    chunk_rows : int, optional
        Rows per chunk; default enough for about 32 MB of float32.
    progress : bool or callable, optional
        ``True`` shows a progress bar on stderr (tqdm); a callable is called as
        ``progress(rows_done, rows_total)`` after each chunk.
    threads : int, optional
        Threads for the quantization; default :func:`rowquant.get_num_threads`.
    report : bool, default False
        Also measure the quantization error (:class:`rowquant.ErrorReport`, as
        :func:`rowquant.error_report` would give), at some extra cost per chunk.

    Returns
    -------
    QuantizeSummary

    Raises
    ------
    TypeError
        The tensor or array does not hold floats.
    ValueError
        ``src`` is not a readable ``.npy`` or safetensors file, ``tensor`` names no tensor in
        it (the message lists them), the table is not 2-D, or it holds NaN or inf (the message
        names the row and column); ``dst`` is empty, ends in a path separator or is ``src``.
        Nothing is written at ``dst``.
    OSError
        ``src`` cannot be read or ``dst`` cannot be written (a missing folder; a folder, device,
        named pipe or socket at ``dst``; a full disk).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import rowquant as rq
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "E.npy"), np.ones((5000, 8), np.float16))
    >>> done = []
    >>> s = rq.quantize_file(os.path.join(folder, "E.npy"), os.path.join(folder, "E.safetensors"),
    ...                      chunk_rows=2000, progress=lambda rows, total: done.append(rows))
    >>> done, s.rows, s.dim, s.source_dtype
    ([2000, 4000, 5000], 5000, 8, 'float16')
    """
    started = time.perf_counter()
    if os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst):
        raise ValueError(f"the output {os.fspath(dst)} is the input file; choose another path")
    with FloatSource(src, tensor) as source:
        rows, dim = source.rows, source.dim
        step = _chunk_rows(chunk_rows, dim)
        header = table_header(rows, dim)
        scales_at, codes_at = len(header), len(header) + 4 * rows
        codes = np.empty((min(step, rows), dim), dtype=np.uint8)
        scales = np.empty(min(step, rows), dtype=np.float32)
        errors = ErrorAccumulator(rows, dim) if report else None
        update, close = _progress_callback(progress, rows, os.path.basename(os.fspath(src)))
        try:
            with atomic_output(dst) as fd:
                _write_all(fd, header, 0)
                os.ftruncate(fd, codes_at + rows * dim)
                for start in range(0, rows, step):
                    stop = min(rows, start + step)
                    count = stop - start
                    values, stored = source.rows_float32(start, stop)
                    _api.quantize_checked(
                        values, codes[:count], scales[:count], threads,
                        original=stored, name=source.label, first_row=start,
                    )
                    _write_all(fd, _little_endian_f32(scales[:count]), scales_at + 4 * start)
                    _write_all(fd, codes[:count], codes_at + start * dim)
                    if errors is not None:
                        errors.update(start, values, codes[:count], scales[:count])
                    del values, stored
                    source.release(start, stop)
                    update(stop)
        finally:
            close()
        output_bytes = codes_at + rows * dim
        return QuantizeSummary(
            source=os.fspath(src),
            output=os.fspath(dst),
            tensor=source.tensor,
            rows=rows,
            dim=dim,
            source_dtype=source.dtype_name,
            source_bytes=source.nbytes,
            output_bytes=output_bytes,
            seconds=time.perf_counter() - started,
            report=errors.finish() if errors is not None else None,
        )
