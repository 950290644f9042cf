"""Where a table may be written, through every writer (``rq.save``, ``qe.save``,
``rq.quantize_file``, ``rowquant quantize -o`` and ``rq.to_onnx``):

- devices, named pipes and sockets are refused and left as they were, directly or through a
  symlink; ``/dev/null`` itself only under a guard that fails the test instead of renaming over
  it, since the tests run as root and a broken writer would destroy it;
- a symlink is written through to its final target (the temporary file goes in the target's
  folder) and stays a symlink; a dangling one creates its target;
- a replaced file keeps its permission bits, owner and group; a new one gets 0666 less the umask;
- a writer killed by SIGKILL mid-write leaves a ``.NAME.XXXXXXXX.partial`` file that the next
  writer of the same path deletes, while the locked temporary file of a live writer is kept;
- an empty path, or one ending in a separator, is refused with a message that says so.

Durability under failures is in test_files_durability.py.
"""

import errno
import fcntl
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rowquant as rq
from rowquant import _atomic, cli

E = np.random.default_rng(7).standard_normal((50, 6)).astype(np.float32)
ROUTES = ["rq.save", "qe.save", "quantize_file", "cli"]
LIBRARY_ROUTES = ["rq.save", "qe.save", "quantize_file"]


class CommandFailed(Exception):
    """``rowquant quantize`` exited 1; the message is its one line on stderr."""


@pytest.fixture
def source(tmp_path):
    """``E`` as a .npy file, in a folder of its own so that output folders hold only outputs."""
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "E.npy", E)
    return folder / "E.npy"


@pytest.fixture
def expected(tmp_path):
    """The bytes every route must write for ``E``, from the in-memory writer."""
    folder = tmp_path / "reference"
    folder.mkdir()
    rq.quantize(E).save(folder / "E.safetensors")
    return (folder / "E.safetensors").read_bytes()


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "rowquant", *(str(arg) for arg in args)],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


def write(route, path, source, cwd=None):
    """Write ``E`` to ``path`` by ``route``; a failed command raises CommandFailed after checking
    it failed cleanly (exit 1, one line, no traceback)."""
    if route == "rq.save":
        rq.save(path, rq.quantize(E))
    elif route == "qe.save":
        rq.quantize(E).save(path)
    elif route == "quantize_file":
        rq.quantize_file(source, path, chunk_rows=16)
    else:
        result = run_cli("quantize", "--quiet", source, "-o", path, cwd=cwd)
        if result.returncode == 0:
            return
        lines = result.stderr.splitlines()
        assert result.returncode == 1, (result.returncode, result.stderr)
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("rowquant quantize: error: "), lines[0]
        raise CommandFailed(lines[0])


def refusal(route, library_error):
    return CommandFailed if route == "cli" else library_error


def listing(folder):
    """Every name under ``folder``, hidden ones included, as relative paths."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, name), folder) for name in dirs + files]
    return sorted(found)


def partial_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".partial"))


# ------------------------------------------------------------------------- special files (1)


@pytest.mark.parametrize("route", ROUTES)
def test_a_named_pipe_is_refused_and_left_as_it_was(tmp_path, source, route):
    out = tmp_path / "out"
    out.mkdir()
    pipe = out / "pipe.safetensors"
    os.mkfifo(pipe)
    with pytest.raises(refusal(route, OSError), match="is a named pipe") as raised:
        write(route, pipe, source)
    assert str(pipe) in str(raised.value) and "not a regular file" in str(raised.value)
    if route != "cli":
        assert isinstance(raised.value, shutil.SpecialFileError)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert listing(out) == ["pipe.safetensors"]


def private_device(folder, kind):
    """A device node of our own to destroy safely if the writer is broken: a character device
    with the numbers of /dev/null, or a block device with those of the first loop device (it
    need not exist: it is never opened). Needs CAP_MKNOD."""
    path = folder / kind
    mode, numbers = {
        "character": (stat.S_IFCHR, os.stat("/dev/null").st_rdev),
        "block": (stat.S_IFBLK, os.makedev(7, 0)),
    }[kind]
    try:
        os.mknod(path, mode | 0o666, numbers)
    except PermissionError:
        pytest.skip("cannot make a device node here")
    return path


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", ["character", "block"])
def test_a_device_is_refused_and_left_as_it_was(tmp_path, source, route, kind):
    out = tmp_path / "out"
    out.mkdir()
    device = private_device(out, kind)
    before = os.lstat(device)
    with pytest.raises(refusal(route, OSError), match=f"is a {kind} device, not a regular file"):
        write(route, device, source)
    after = os.lstat(device)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert listing(out) == [kind]


def test_a_socket_is_refused_and_left_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = out / "s"
    if len(os.fsencode(path)) >= 100:
        pytest.skip("the temporary folder's path is too long for a socket's")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        with pytest.raises(shutil.SpecialFileError, match="it is a socket, not a regular file"):
            rq.quantize(E).save(path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert listing(out) == ["s"]


# A broken writer would rename over /dev/null (the tests run as root): these guards make any
# rename onto it fail the test instead, in this process and in the command's.
RENAME_GUARD = textwrap.dedent(
    """
    import os

    def _guard(rename):
        def guarded(source, destination, *args, **kwargs):
            if os.path.realpath(destination) == "/dev/null":
                raise AssertionError(f"renamed {source} over /dev/null")
            return rename(source, destination, *args, **kwargs)
        return guarded

    os.replace, os.rename = _guard(os.replace), _guard(os.rename)
    """
)


def dev_null_status():
    status = os.lstat("/dev/null")
    assert stat.S_ISCHR(status.st_mode), "/dev/null is not a character device before the test"
    return status.st_ino, status.st_rdev


@pytest.mark.parametrize("route", LIBRARY_ROUTES)
def test_dev_null_is_refused_and_survives(source, route, monkeypatch):
    before = dev_null_status()
    namespace = {}
    exec(RENAME_GUARD, namespace)
    monkeypatch.setattr(os, "replace", namespace["_guard"](os.replace))
    monkeypatch.setattr(os, "rename", namespace["_guard"](os.rename))
    partials_before = partial_files("/dev")
    with pytest.raises(shutil.SpecialFileError, match=(
        "cannot write /dev/null: it is a character device, not a regular file"
    )):
        write(route, "/dev/null", source)
    assert dev_null_status() == before
    assert partial_files("/dev") == partials_before


def test_command_with_output_dev_null_is_refused_and_dev_null_survives(source):
    before = dev_null_status()
    program = RENAME_GUARD + "import sys\nfrom rowquant.cli import main\nsys.exit(main())\n"
    result = subprocess.run(
        [sys.executable, "-c", program, "quantize", str(source), "-o", "/dev/null"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        "rowquant quantize: error: cannot write /dev/null: it is a character device, "
        "not a regular file\n"
    )
    assert dev_null_status() == before


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("special", ["/dev/null", "fifo"])
def test_a_symlink_to_a_special_file_is_refused(tmp_path, source, route, special):
    # safe even with a broken writer: it would replace the link, not what the link points to
    dev_null = dev_null_status()
    out = tmp_path / "out"
    out.mkdir()
    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)
    link = out / "link.safetensors"
    os.symlink(special, link)
    with pytest.raises(refusal(route, OSError), match="not a regular file") as raised:
        write(route, link, source)
    assert f"{link} (a link to {special})" in str(raised.value)
    assert os.readlink(link) == special
    assert stat.S_ISCHR(os.stat(link).st_mode) or stat.S_ISFIFO(os.stat(link).st_mode)
    assert listing(out) == ["link.safetensors"]
    assert dev_null_status() == dev_null


# ------------------------------------------------------------------------------ symlinks (1)


@pytest.mark.parametrize("route", ROUTES)
def test_a_symlink_is_written_through_to_its_target(tmp_path, source, expected, route):
    links, targets = tmp_path / "links", tmp_path / "targets"
    links.mkdir()
    targets.mkdir()
    target = targets / "table.safetensors"
    target.write_bytes(b"the previous table")
    link = links / "table.safetensors"
    os.symlink("../targets/table.safetensors", link)  # relative to the link's folder
    write(route, link, source, cwd=tmp_path / "in")
    assert os.path.islink(link) and os.readlink(link) == "../targets/table.safetensors"
    assert target.read_bytes() == expected
    assert listing(links) == ["table.safetensors"]
    assert listing(targets) == ["table.safetensors"]


def test_a_chain_of_symlinks_is_followed_to_the_end(tmp_path, expected):
    target = tmp_path / "target.safetensors"
    target.write_bytes(b"old")
    os.symlink(target, tmp_path / "second")
    os.symlink(tmp_path / "second", tmp_path / "first")
    rq.quantize(E).save(tmp_path / "first")
    assert os.readlink(tmp_path / "first") == str(tmp_path / "second")
    assert os.readlink(tmp_path / "second") == str(target)
    assert target.read_bytes() == expected


def test_the_temporary_file_is_made_in_the_targets_folder(tmp_path, source, expected):
    links, targets = tmp_path / "links", tmp_path / "targets"
    links.mkdir()
    targets.mkdir()
    os.symlink(targets / "table.safetensors", links / "table.safetensors")
    seen = []

    def look(done, total):
        seen.append((partial_files(links), partial_files(targets)))

    rq.quantize_file(source, links / "table.safetensors", chunk_rows=16, progress=look)
    assert all(in_links == [] and len(in_targets) == 1 for in_links, in_targets in seen), seen
    assert seen[0][1][0].startswith(".table.safetensors.")
    assert (targets / "table.safetensors").read_bytes() == expected


@pytest.mark.parametrize("route", ROUTES)
def test_a_dangling_symlink_creates_its_target(tmp_path, source, expected, route):
    os.symlink(tmp_path / "new.safetensors", tmp_path / "link")
    write(route, tmp_path / "link", source)
    assert os.readlink(tmp_path / "link") == str(tmp_path / "new.safetensors")
    assert (tmp_path / "new.safetensors").read_bytes() == expected


@pytest.mark.parametrize("route", ROUTES)
def test_a_dangling_symlink_into_a_missing_folder_is_refused(tmp_path, source, route):
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(tmp_path / "missing" / "new.safetensors", out / "link")
    with pytest.raises(refusal(route, FileNotFoundError), match="no folder .*missing"):
        write(route, out / "link", source)
    assert listing(out) == ["link"] and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("route", ROUTES)
def test_a_symlink_loop_is_refused(tmp_path, source, route):
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(out / "b", out / "a")
    os.symlink(out / "a", out / "b")
    with pytest.raises(refusal(route, OSError), match="symbolic links loop") as raised:
        write(route, out / "a", source)
    if route != "cli":
        assert raised.value.errno == errno.ELOOP
    assert listing(out) == ["a", "b"] and os.readlink(out / "a") == str(out / "b")


# --------------------------------------------------------------------------- permissions (2)


@pytest.mark.parametrize("route", LIBRARY_ROUTES)
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o755])
def test_replacing_a_file_keeps_its_permission_bits(tmp_path, source, expected, route, mode):
    path = tmp_path / "t.safetensors"
    path.write_bytes(b"old")
    os.chmod(path, mode)
    write(route, path, source)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert path.read_bytes() == expected


def test_command_keeps_a_private_files_permission_bits(tmp_path, source, expected):
    path = tmp_path / "t.safetensors"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    write("cli", path, source)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes() == expected


def test_writing_through_a_symlink_keeps_the_targets_permission_bits(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    os.symlink(target, tmp_path / "link")
    rq.quantize(E).save(tmp_path / "link")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert stat.S_ISLNK(os.lstat(tmp_path / "link").st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_replacing_a_file_keeps_its_owner_and_group(tmp_path):
    path = tmp_path / "t.safetensors"
    path.write_bytes(b"old")
    os.chown(path, 12345, 23456)
    os.chmod(path, 0o640)
    rq.quantize(E).save(path)
    status = os.stat(path)
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (12345, 23456, 0o640)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a file owned by another user")
def test_an_owner_that_may_not_be_set_is_left_and_the_write_succeeds(tmp_path, monkeypatch,
                                                                      expected):
    path = tmp_path / "t.safetensors"
    path.write_bytes(b"old")
    os.chown(path, 12345, 23456)
    os.chmod(path, 0o600)
    calls = []

    def not_permitted(fd, owner, group):
        calls.append((owner, group))
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", not_permitted)
    rq.quantize(E).save(path)
    # the owner and the group are tried together, then the group alone (a user may set it)
    assert calls == [(12345, 23456), (-1, 23456)]
    status = os.stat(path)
    assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (os.geteuid(), 0o600)
    assert path.read_bytes() == expected


def test_a_new_file_gets_0666_less_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        rq.quantize(E).save(tmp_path / "new")
        os.symlink(tmp_path / "newer", tmp_path / "link")
        rq.quantize(E).save(tmp_path / "link")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "newer").st_mode) == 0o600


# ------------------------------------------------------------- abandoned temporary files (3)


PAUSED_WRITER = textwrap.dedent(
    """
    import sys
    import rowquant as rq

    def pause(done, total):
        if done == 500:  # the temporary file exists and half of it is written
            print("writing", flush=True)
            sys.stdin.readline()

    rq.quantize_file(sys.argv[1], sys.argv[2], chunk_rows=500, progress=pause)
    print("done", flush=True)
    """
)


def start_paused_writer(source, output):
    """A process writing ``output`` that stops mid-write until a line arrives on its stdin."""
    writer = subprocess.Popen(
        [sys.executable, "-c", PAUSED_WRITER, str(source), str(output)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert read_line(writer) == "writing\n"
    return writer


def stop(process):
    """Kill ``process`` if it still runs, reap it and close our ends of its pipes."""
    process.kill()
    process.wait()
    process.stdin.close()
    process.stdout.close()


def read_line(process, timeout=120):
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        process.kill()
        raise AssertionError("the writer said nothing")
    return process.stdout.readline()


@pytest.mark.parametrize("next_writer", ["qe.save", "cli"])
def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path, expected,
                                                                         next_writer):
    big = np.random.default_rng(1).standard_normal((2000, 16)).astype(np.float32)
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "big.npy", big)
    np.save(tmp_path / "in" / "E.npy", E)
    out = tmp_path / "out"
    out.mkdir()
    output = out / "table.safetensors"

    live = start_paused_writer(tmp_path / "in" / "big.npy", output)
    try:
        (live_partial,) = partial_files(out)
        doomed = start_paused_writer(tmp_path / "in" / "big.npy", output)
        try:
            # the second writer looked for abandoned files first, and left the live one's
            assert live_partial in partial_files(out)
            (doomed_partial,) = set(partial_files(out)) - {live_partial}
            doomed.kill()  # SIGKILL: no chance to clean up
            assert doomed.wait(60) == -9
        finally:
            stop(doomed)
        assert partial_files(out) == sorted([live_partial, doomed_partial])

        write(next_writer, output, tmp_path / "in" / "E.npy")
        assert partial_files(out) == [live_partial]
        assert output.read_bytes() == expected

        live.stdin.write("\n")
        live.stdin.flush()
        assert read_line(live) == "done\n"
        assert live.wait(60) == 0
    finally:
        stop(live)
    assert os.listdir(out) == ["table.safetensors"]
    assert np.array_equal(rq.load(output).codes, rq.quantize(big).codes)


def test_a_file_locked_in_this_process_is_kept_until_unlocked(tmp_path):
    stale = tmp_path / ".t.safetensors.abcd1234.partial"
    stale.write_bytes(b"a live writer's half table")
    holder = os.open(stale, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        rq.quantize(E).save(tmp_path / "t.safetensors")
        assert stale.exists()
    finally:
        os.close(holder)
    rq.quantize(E).save(tmp_path / "t.safetensors")
    assert not stale.exists()


def test_only_our_exact_temporary_names_are_removed(tmp_path):
    abandoned = [".t.safetensors.abcd1234.partial", ".t.safetensors.x_9_y_8_.partial"]
    others = [
        ".t.safetensors.abc.partial",           # too short
        ".t.safetensors.abcd12345.partial",     # too long
        ".t.safetensors.ABCD1234.partial",      # not mkstemp's characters
        ".t.safetensors.abcd-234.partial",
        ".t.safetensors.data.abcd1234.partial",  # another file's (to_onnx's external data)
        ".u.safetensors.abcd1234.partial",
        "t.safetensors.abcd1234.partial",       # not hidden
        ".t.safetensors.abcd1234.partial.bak",
        ".t.safetensors.abcd1234.partia",
    ]
    for name in abandoned + others:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "linked").write_bytes(b"not ours")
    os.symlink(tmp_path / "linked", tmp_path / ".t.safetensors.link1234.partial")
    os.mkdir(tmp_path / ".t.safetensors.fold1234.partial")
    os.mkfifo(tmp_path / ".t.safetensors.pipe1234.partial")  # opening it must not hang
    rq.quantize(E).save(tmp_path / "t.safetensors")
    left = set(os.listdir(tmp_path))
    assert not left & set(abandoned)
    assert set(others) <= left
    assert {".t.safetensors.link1234.partial", ".t.safetensors.fold1234.partial",
            ".t.safetensors.pipe1234.partial"} <= left
    assert (tmp_path / "linked").read_bytes() == b"not ours"


def test_a_live_writers_temporary_file_is_locked_and_named_for_clean_up(tmp_path, source):
    seen = []

    def look(done, total):
        for name in partial_files(tmp_path):
            descriptor = os.open(tmp_path / name, os.O_RDONLY)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(descriptor)
            seen.append(name)

    rq.quantize_file(source, tmp_path / "out.safetensors", chunk_rows=16, progress=look)
    assert len(set(seen)) == 1 and len(seen) == 4
    assert _atomic._is_partial_name(seen[0], "out.safetensors"), seen[0]


def test_a_writer_whose_new_file_a_cleaner_deleted_makes_another(tmp_path, monkeypatch, expected):
    """The race the lock leaves open: a cleaner may lock and delete a writer's temporary file
    between its creation and the writer's own flock."""
    real_mkstemp = _atomic.tempfile.mkstemp
    created = []

    def mkstemp_then_cleaner(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        created.append(name)
        if len(created) == 1:  # what another writer's clean-up does to an unlocked file
            other = os.open(name, os.O_RDONLY)
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(name)
            os.close(other)
        return fd, name

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", mkstemp_then_cleaner)
    out = tmp_path / "out"
    out.mkdir()
    rq.quantize(E).save(out / "t.safetensors")
    assert len(created) == 2
    assert (out / "t.safetensors").read_bytes() == expected
    assert os.listdir(out) == ["t.safetensors"]


# ------------------------------------------------------------------------ empty paths (4)


@pytest.mark.parametrize("route", ROUTES)
def test_an_empty_output_path_is_refused(tmp_path, source, route, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = listing(tmp_path)
    with pytest.raises(refusal(route, ValueError), match="the output path is empty") as raised:
        write(route, "", source, cwd=work)
    assert "partial" not in str(raised.value)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("route", ROUTES)
def test_a_path_ending_in_a_separator_is_refused(tmp_path, source, route):
    with pytest.raises(refusal(route, ValueError), match="ending in '/' names a folder"):
        write(route, f"{tmp_path}/out/", source)
    (tmp_path / "folder").mkdir()
    with pytest.raises(refusal(route, IsADirectoryError), match="it is a folder"):
        write(route, f"{tmp_path}/folder/", source)
    assert listing(tmp_path) == ["folder", "in", "in/E.npy"]


def test_command_with_an_empty_output_says_so_in_one_line(tmp_path, source):
    result = run_cli("quantize", source, "-o", "", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "rowquant quantize: error: the output path is empty; give a file name\n"
    )
    assert listing(tmp_path) == ["in", "in/E.npy"]


@pytest.mark.parametrize("path, message", [
    ("", "the --json path is empty"),
    (".", "cannot write .: it is a folder"),
])
def test_bench_refuses_an_unusable_json_path_before_running(path, message, capsys):
    assert cli.main(["bench", "--json", path, "--tables", "cache"]) == 1
    assert capsys.readouterr().err == f"rowquant bench: error: {message}\n"


# -------------------------------------------------------------------------------- to_onnx


def test_to_onnx_follows_the_same_rules(tmp_path):
    pytest.importorskip("onnx")
    qe = rq.quantize(E)
    os.mkfifo(tmp_path / "pipe.onnx")
    with pytest.raises(shutil.SpecialFileError, match="is a named pipe"):
        rq.to_onnx(qe, tmp_path / "pipe.onnx")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.onnx").st_mode)

    (tmp_path / "model.onnx").write_bytes(b"old")
    os.chmod(tmp_path / "model.onnx", 0o600)
    os.symlink(tmp_path / "model.onnx", tmp_path / "link.onnx")
    rq.to_onnx(qe, tmp_path / "link.onnx")
    assert os.path.islink(tmp_path / "link.onnx")
    assert stat.S_IMODE(os.stat(tmp_path / "model.onnx").st_mode) == 0o600
    assert (tmp_path / "model.onnx").read_bytes().startswith(b"\x08")  # an ONNX ModelProto
    assert sorted(os.listdir(tmp_path)) == ["link.onnx", "model.onnx", "pipe.onnx"]
