"""Atomic file writes: a file is written to a temporary name beside it, flushed to disk and
renamed into place, so that a failed or interrupted write never leaves a partial file at the
target path, and a file already there stays as it was.

A replaced file keeps its permissions (and owner and group where permitted), a symlink is
written through to its target, devices, pipes and sockets are refused, and the temporary file
of a writer killed mid-write is deleted by the next write to the same path
(:func:`atomic_output` has the details). The rowquant files, ``quantize_file``'s output and the
ONNX models are all written through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile

try:
    import fcntl
except ImportError:  # not POSIX: no locks, and no clean-up of abandoned temporary files
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_output", "write_all"]

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
    >>> from rowquant._atomic import atomic_output, write_all
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.bin")
    >>> with atomic_output(path) as fd:
    ...     write_all(fd, b"complete", 0)
    >>> with open(path, "rb") as file:
    ...     file.read()
    b'complete'
    >>> with atomic_output(""):
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


def write_all(fd: int, data, offset: int) -> None:
    """Write all of ``data`` (a buffer) at ``offset``; os.pwrite may write less than asked."""
    view = memoryview(data)
    if view.nbytes == 0:
        return
    view = view.cast("B")
    while view.nbytes:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
