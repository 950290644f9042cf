"""``rowquant quantize`` and ``rowquant inspect``, run as the installed command in a subprocess.

The files the command writes are compared byte for byte with what the library's in-memory path
(``rq.quantize(E).save(path)``) writes in this process, a different code path from the streaming
one the command uses. Error reports (``inspect --against``) are compared with errors computed here
in float64. Every failure must exit 1 with one line on stderr and leave nothing behind; usage
errors exit 2. Tables are small (300 x 17) so the whole file runs in seconds.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

import rowquant as rq

ROWS, DIM = 300, 17
ZERO_ROWS = (0, 150, 299)
EXPECTED_METADATA = {
    "format": "rowquant",
    "version": "1",
    "scheme": "rowwise-symmetric-u8",
    "bias": "128",
}


# ---------------------------------------------------------------------------------- helpers


def run(*args, cwd=None, command=None):
    """Run ``python -m rowquant ARGS`` (or ``command ARGS``) and capture its text output."""
    prefix = [sys.executable, "-m", "rowquant"] if command is None else [command]
    return subprocess.run(
        [*prefix, *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def assert_ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)


def assert_failed(result, command, *fragments):
    """Exit 1, exactly one line on stderr, ``rowquant COMMAND: error: ...`` holding every
    fragment, no traceback, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rowquant {command}: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == "", result.stdout
    return lines[0]


def assert_usage_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def listing(folder):
    """Every file and folder under ``folder``, hidden ones included, as relative paths."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(found)


def assert_nothing_left(folder, before, output):
    """The failed run created nothing: no file at ``output``, no ``*.partial`` anywhere."""
    assert not os.path.lexists(output)
    after = listing(folder)
    assert not [name for name in after if name.endswith(".partial")], after
    assert after == before


def make_table(seed=0, dtype=np.float32, rows=ROWS, dim=DIM, zero_rows=()):
    """A float table whose rows have very different magnitudes (so scales differ)."""
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((rows, dim)) * rng.uniform(0.01, 10.0, size=(rows, 1))
    E = E.astype(dtype)
    E[list(zero_rows)] = 0
    return E


def in_memory_bytes(E, folder):
    """The bytes ``rq.quantize(E).save(path)`` writes, in this process."""
    folder.mkdir(exist_ok=True)
    path = folder / "in_memory.safetensors"
    rq.quantize(E).save(path)
    return path.read_bytes()


@pytest.fixture
def work(tmp_path):
    """The folder the command reads from and writes to; reference files go elsewhere."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def reference(tmp_path):
    return tmp_path / "reference"


@pytest.fixture
def npy_input(work):
    E = make_table()
    path = work / "E.npy"
    np.save(path, E)
    return path, E


# ---------------------------------------------------------------------------------- quantize


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_quantize_npy_matches_in_memory_save(work, reference, dtype):
    E = make_table(seed=1, dtype=dtype)
    source = work / "E.npy"
    np.save(source, E)
    output = work / "E.safetensors"
    result = run("quantize", source, "-o", output)
    assert_ok(result)
    assert output.read_bytes() == in_memory_bytes(E, reference)
    assert listing(work) == ["E.npy", "E.safetensors"]
    # stderr is a pipe, not a TTY: no progress bar, nothing at all
    assert result.stderr == ""
    assert re.search(r"\brows\s+300\n", result.stdout), result.stdout
    assert re.search(r"\bdim\s+17\n", result.stdout), result.stdout
    assert "smaller" in result.stdout and "error" in result.stdout
    assert np.dtype(dtype).name in result.stdout
    assert str(output) in result.stdout


def test_quantize_single_safetensors_tensor_without_tensor_option(work, reference):
    E = make_table(seed=2)
    source = work / "model.safetensors"
    save_file({"embeddings": E}, str(source))
    output = work / "q.safetensors"
    result = run("quantize", source, "-o", output)
    assert_ok(result)
    assert result.stderr == ""
    assert output.read_bytes() == in_memory_bytes(E, reference)
    assert "[embeddings]" in result.stdout


def test_quantize_named_tensor_of_several(work, reference):
    E = make_table(seed=3)
    other = make_table(seed=4, rows=40, dim=17)
    source = work / "model.safetensors"
    save_file(
        {"other": other, "weight": E, "bias": np.ones(17, np.float32)}, str(source)
    )
    output = work / "q.safetensors"
    result = run("quantize", source, "--tensor", "weight", "-o", output)
    assert_ok(result)
    assert result.stderr == ""
    assert output.read_bytes() == in_memory_bytes(E, reference)
    assert "[weight]" in result.stdout


def test_quantize_small_chunks_and_one_thread_give_the_same_bytes(work, reference, npy_input):
    source, E = npy_input
    output = work / "q.safetensors"
    result = run("quantize", source, "-o", output, "--chunk-rows", "7", "--threads", "1")
    assert_ok(result)
    assert result.stderr == ""
    assert output.read_bytes() == in_memory_bytes(E, reference)


def test_quantize_quiet_prints_nothing(work, reference, npy_input):
    source, E = npy_input
    output = work / "q.safetensors"
    result = run("quantize", "--quiet", source, "-o", output)
    assert_ok(result)
    assert result.stdout == "" and result.stderr == ""
    assert output.read_bytes() == in_memory_bytes(E, reference)


def test_console_script_works(work, reference, npy_input):
    script = os.path.join(os.path.dirname(sys.executable), "rowquant")
    if not os.path.exists(script):
        pytest.skip(f"no console script at {script}")
    source, E = npy_input
    output = work / "q.safetensors"
    result = run("quantize", source, "-o", output, command=script)
    assert_ok(result)
    assert output.read_bytes() == in_memory_bytes(E, reference)
    assert re.search(r"\brows\s+300\n", result.stdout), result.stdout


def test_existing_output_kept_on_failure_and_replaced_on_success(work, reference, npy_input):
    source, E = npy_input
    output = work / "q.safetensors"
    output.write_bytes(b"an older file")
    bad = make_table(seed=5)
    bad[10, 4] = np.nan
    bad_source = work / "bad.npy"
    np.save(bad_source, bad)
    before = listing(work)

    assert_failed(run("quantize", bad_source, "-o", output), "quantize", "row 10, column 4")
    assert output.read_bytes() == b"an older file"
    assert listing(work) == before

    assert_ok(run("quantize", source, "-o", output))
    assert output.read_bytes() == in_memory_bytes(E, reference)
    assert listing(work) == before


# ---------------------------------------------------------------------------------- quantize failures


def quantize_fails(work, source, *options, output=None, fragments=()):
    """Run ``quantize SOURCE -o OUTPUT OPTIONS``, check it failed cleanly; its error line."""
    output = work / "out.safetensors" if output is None else output
    before = listing(work)
    result = run("quantize", source, "-o", output, *options)
    line = assert_failed(result, "quantize", *fragments)
    assert_nothing_left(work, before, output)
    return line


def test_missing_input(work):
    missing = work / "missing.npy"
    quantize_fails(work, missing, fragments=("No such file or directory", str(missing)))


def test_wrong_tensor_name_lists_the_tensors(work):
    source = work / "model.safetensors"
    save_file({"weight": make_table(), "other": make_table(seed=1)}, str(source))
    quantize_fails(
        work, source, "--tensor", "nope",
        fragments=("'nope'", "weight (F32 [300, 17])", "other (F32 [300, 17])"),
    )


def test_several_tensors_need_the_tensor_option(work):
    source = work / "model.safetensors"
    save_file({"weight": make_table(), "other": make_table(seed=1)}, str(source))
    quantize_fails(work, source, fragments=("2 tensors", "weight", "other"))


def test_integer_npy_is_refused(work):
    source = work / "ints.npy"
    np.save(source, np.arange(300 * 17, dtype=np.int32).reshape(300, 17))
    quantize_fails(work, source, fragments=("int32",))


def test_integer_safetensors_tensor_is_refused(work):
    source = work / "ints.safetensors"
    save_file({"ids": np.arange(300 * 17, dtype=np.int64).reshape(300, 17)}, str(source))
    quantize_fails(work, source, fragments=("I64", "'ids'"))


@pytest.mark.parametrize(
    "row, column, chunk_rows",
    [(5, 3, None), (250, 11, 64), (192, 0, 64)],
    ids=["first-chunk", "later-chunk", "first-row-of-a-chunk"],
)
def test_nan_is_reported_at_its_global_row_and_column(work, row, column, chunk_rows):
    E = make_table()
    E[row, column] = np.nan
    source = work / "E.npy"
    np.save(source, E)
    options = () if chunk_rows is None else ("--chunk-rows", chunk_rows)
    line = quantize_fails(work, source, *options, fragments=(f"row {row}, column {column}",))
    assert "nan" in line.lower()


def test_inf_is_reported(work):
    E = make_table()
    E[17, 2] = np.inf
    source = work / "E.npy"
    np.save(source, E)
    quantize_fails(work, source, "--chunk-rows", "10", fragments=("inf", "row 17, column 2"))


def test_float64_beyond_float32_range_is_reported(work):
    E = make_table(dtype=np.float64)
    E[123, 16] = -1e300
    source = work / "E.npy"
    np.save(source, E)
    quantize_fails(work, source, fragments=("overflows float32", "row 123, column 16"))


def test_output_folder_missing(work, npy_input):
    source, _ = npy_input
    output = work / "no_such_folder" / "out.safetensors"
    quantize_fails(work, source, output=output, fragments=(str(work / "no_such_folder"),))


def test_output_inside_a_regular_file(work, npy_input):
    source, _ = npy_input
    (work / "plain.txt").write_text("not a folder")
    output = work / "plain.txt" / "out.safetensors"
    quantize_fails(work, source, output=output, fragments=("plain.txt is not a folder",))
    assert (work / "plain.txt").read_text() == "not a folder"


def test_output_is_the_input(work, npy_input):
    source, _ = npy_input
    original = source.read_bytes()
    before = listing(work)
    # the same file spelled differently, relative to the working folder
    result = run("quantize", "E.npy", "-o", "./E.npy", cwd=work)
    assert_failed(result, "quantize", "input")
    assert source.read_bytes() == original
    assert listing(work) == before


def test_truncated_npy(work):
    source = work / "E.npy"
    np.save(source, make_table())
    data = source.read_bytes()
    source.write_bytes(data[:-100])
    quantize_fails(work, source, fragments=("truncated",))


def test_neither_npy_nor_safetensors(work):
    source = work / "noise.bin"
    source.write_bytes(np.random.default_rng(7).integers(0, 256, 1000, np.uint8).tobytes())
    quantize_fails(work, source, fragments=(str(source), "not a .npy file, nor a readable safetensors"))


def test_inspect_tensor_without_against_is_a_usage_error(work, npy_input):
    source, _ = npy_input
    table_path = work / "t.safetensors"
    assert run("quantize", source, "-o", table_path, "--quiet").returncode == 0
    result = run("inspect", table_path, "--tensor", "a")
    assert result.returncode == 2
    assert "--tensor names a tensor of ORIGINAL: it needs --against" in result.stderr


def test_debug_shows_the_traceback_and_still_cleans_up(work):
    E = make_table()
    E[250, 11] = np.nan
    source = work / "E.npy"
    np.save(source, E)
    output = work / "out.safetensors"
    before = listing(work)
    result = run("--debug", "quantize", source, "-o", output, "--chunk-rows", "64")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "row 250, column 11" in result.stderr
    assert_nothing_left(work, before, output)
    # --debug is accepted after the command too
    result = run("quantize", source, "-o", output, "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert_nothing_left(work, before, output)


# ---------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["quantize", "{src}"], ["-o/--output"]),
        (["quantize", "{src}", "-o", "{out}", "--frobnicate"], ["--frobnicate"]),
        (["quantize", "{src}", "-o", "{out}", "--threads", "0"], ["--threads", "at least 1"]),
        (["quantize", "{src}", "-o", "{out}", "--chunk-rows", "-1"], ["--chunk-rows"]),
        ([], ["COMMAND"]),
    ],
    ids=["no-output", "unknown-option", "threads-0", "chunk-rows-negative", "no-command"],
)
def test_usage_errors_exit_2(work, npy_input, args, fragments):
    source, _ = npy_input
    output = work / "out.safetensors"
    before = listing(work)
    args = [arg.format(src=source, out=output) for arg in args]
    assert_usage_error(run(*args), *fragments)
    assert_nothing_left(work, before, output)


@pytest.mark.parametrize("command", ["quantize", "inspect"])
def test_help_shows_examples(command):
    result = run(command, "--help")
    assert_ok(result)
    assert "examples:" in result.stdout
    assert f"rowquant {command} " in result.stdout


# ---------------------------------------------------------------------------------- inspect


@pytest.fixture
def quantized(work):
    """A rowquant file written in this process from a table with all-zero rows."""
    E = make_table(seed=11, zero_rows=ZERO_ROWS)
    path = work / "table.safetensors"
    rq.quantize(E).save(path)
    return path, E


def test_inspect_text(quantized):
    path, _ = quantized
    result = run("inspect", path)
    assert_ok(result)
    assert result.stderr == ""
    assert re.search(r"^rows\s+300$", result.stdout, re.M), result.stdout
    assert re.search(r"^dim\s+17$", result.stdout, re.M), result.stdout
    assert "rowquant version 1" in result.stdout
    assert f"{len(ZERO_ROWS)} all-zero rows" in result.stdout
    assert "norms" not in result.stdout


def test_inspect_shows_stored_norms(work):
    path = work / "normed.safetensors"
    qe = rq.quantize(make_table(seed=12))
    qe.save(path, norms=True)
    result = run("inspect", path)
    assert_ok(result)
    assert re.search(r"^norms\s+stored", result.stdout, re.M), result.stdout
    assert re.search(r"^tensor\s+norms: F32 \[300\]", result.stdout, re.M), result.stdout


def test_inspect_json(quantized):
    path, E = quantized
    result = run("inspect", path, "--json")
    assert_ok(result)
    info = json.loads(result.stdout)
    assert info["rowquant"] is True
    assert info["rows"] == ROWS and info["dim"] == DIM
    assert info["file_bytes"] == os.path.getsize(path)
    assert info["metadata"] == EXPECTED_METADATA
    scales = rq.quantize(E).scales
    assert info["scales"]["min"] == float(scales.min())
    assert info["scales"]["max"] == float(scales.max())
    assert info["scales"]["zero_rows"] == len(ZERO_ROWS)
    assert {t["name"]: (t["dtype"], t["shape"]) for t in info["tensors"]} == {
        "scales": ("F32", [ROWS]),
        "codes": ("U8", [ROWS, DIM]),
    }


def row_cosines(E, D):
    """Cosine similarity of each row of E with that of D, in float64; 1 for rows zero in both."""
    E = E.astype(np.float64)
    D = D.astype(np.float64)
    cosines = np.ones(len(E))
    for i, (e, d) in enumerate(zip(E, D)):
        ne, nd = np.linalg.norm(e), np.linalg.norm(d)
        if ne > 0 and nd > 0:
            cosines[i] = float(e @ d) / (ne * nd)
        elif ne > 0 or nd > 0:
            cosines[i] = 0.0
    return cosines


@pytest.fixture
def against_files(work):
    """A rowquant file (written in this process) and its original as .npy; no zero rows."""
    E = make_table(seed=12)
    original = work / "E.npy"
    np.save(original, E)
    path = work / "table.safetensors"
    rq.quantize(E).save(path)
    return path, original, E


def test_inspect_against_json(against_files):
    path, original, E = against_files
    result = run("inspect", path, "--against", original, "--json")
    assert_ok(result)
    info = json.loads(result.stdout)
    qe = rq.quantize(E)
    D = qe.dequantize()
    # without zero rows, the smallest scale is not trivially 0
    assert info["scales"]["min"] == float(qe.scales.min()) > 0
    assert info["scales"]["max"] == float(qe.scales.max())
    assert info["scales"]["zero_rows"] == 0
    error = info["error"]
    assert error["rows"] == ROWS and error["dim"] == DIM
    expected_max = np.abs(E.astype(np.float64) - D.astype(np.float64)).max()
    np.testing.assert_allclose(error["max_abs_error"], expected_max, rtol=1e-6)
    cosines = row_cosines(E, D)
    np.testing.assert_allclose(error["cosine"]["min"], cosines.min(), rtol=1e-9)
    assert error["worst_rows"][0]["row"] == int(np.argmin(cosines))
    np.testing.assert_allclose(error["worst_rows"][0]["cosine"], cosines.min(), rtol=1e-9)


def test_inspect_against_text(against_files):
    path, original, E = against_files
    result = run("inspect", path, "--against", original)
    assert_ok(result)
    assert "SNR" in result.stdout
    assert "worst rows" in result.stdout
    worst = int(np.argmin(row_cosines(E, rq.quantize(E).dequantize())))
    assert re.search(rf"^\s+row {worst}\s", result.stdout, re.M), result.stdout


def test_inspect_lists_the_tensors_of_other_safetensors_files(work):
    path = work / "model.safetensors"
    save_file({"encoder.weight": make_table(), "head.bias": np.zeros(5, np.float32)}, str(path))
    result = run("inspect", path)
    assert_ok(result)
    assert "not a rowquant table" in result.stdout
    assert "encoder.weight" in result.stdout and "head.bias" in result.stdout
    result = run("inspect", path, "--json")
    assert_ok(result)
    info = json.loads(result.stdout)
    assert info["rowquant"] is False
    assert sorted(t["name"] for t in info["tensors"]) == ["encoder.weight", "head.bias"]


def test_inspect_against_needs_a_rowquant_file(work, npy_input):
    original, E = npy_input
    path = work / "model.safetensors"
    save_file({"weight": E}, str(path))
    assert_failed(run("inspect", path, "--against", original), "inspect", "not a rowquant")


def corrupt_truncate(data):
    return data[:-10]


def corrupt_header_not_json(data):
    length = int.from_bytes(data[:8], "little")
    return data[:8] + b"#" * length + data[8 + length :]


def corrupt_header_broken_json(data):
    length = int.from_bytes(data[:8], "little")
    return data[:8] + b"{" + b"@" * (length - 1) + data[8 + length :]


@pytest.mark.parametrize(
    "corrupt", [corrupt_truncate, corrupt_header_not_json, corrupt_header_broken_json],
    ids=["truncated", "header-not-json", "header-broken-json"],
)
def test_inspect_corrupted_file(quantized, corrupt):
    path, _ = quantized
    path.write_bytes(corrupt(path.read_bytes()))
    assert_failed(run("inspect", path), "inspect", str(path))


@pytest.mark.parametrize("shape", [(ROWS - 1, DIM), (ROWS, DIM + 1)], ids=["rows", "dim"])
def test_inspect_against_shape_mismatch(work, quantized, shape):
    path, _ = quantized
    original = work / "other.npy"
    np.save(original, make_table(rows=shape[0], dim=shape[1]))
    assert_failed(
        run("inspect", path, "--against", original), "inspect", "shape", str(shape), "(300, 17)"
    )


def test_inspect_schemes_compares_size_and_error_per_scheme(tmp_path):
    E = np.random.default_rng(5).standard_normal((300, 21)).astype(np.float32)
    np.save(tmp_path / "E.npy", E)
    rq.quantize(E).save(str(tmp_path / "t.safetensors"))
    done = run("inspect", str(tmp_path / "t.safetensors"), "--against", str(tmp_path / "E.npy"),
               "--schemes", "--json")
    assert done.returncode == 0, done.stderr
    schemes = {row["scheme"]: row for row in json.loads(done.stdout)["schemes"]}
    assert list(schemes) == ["8-bit", "8-bit, bfloat16 scale", "8-bit, float16 scale", "4-bit",
                             "4-bit range search", "2-bit"]
    # 21 codes + a float32 (or 16-bit) scale; 11 bytes of 4-bit codes (padded) or 6 of 2-bit
    # + two float16
    assert [row["bytes_per_row"] for row in schemes.values()] == [25, 23, 23, 15, 15, 10]
    assert schemes["8-bit, bfloat16 scale"]["name"] == "rowwise-symmetric-u8-bf16"
    for name, arguments in (("8-bit", {}), ("4-bit", {"bits": 4}), ("2-bit", {"bits": 2}),
                            ("8-bit, float16 scale", {"scale_dtype": "float16"})):
        expected = rq.error_report(E, rq.quantize(E, **arguments))
        assert schemes[name]["relative_error"] == expected.relative_error
        assert schemes[name]["cosine_min"] == expected.cosine_min
    errors = [schemes[name]["relative_error"]
              for name in ("8-bit", "4-bit", "4-bit range search", "2-bit")]
    assert errors[0] < errors[2] <= errors[1] < errors[3]
    text = run("inspect", str(tmp_path / "t.safetensors"), "--against", str(tmp_path / "E.npy"),
               "--schemes")
    assert text.returncode == 0 and "under each scheme" in text.stdout
    assert "4-bit range search" in text.stdout and "measuring" in text.stderr
    refused = run("inspect", str(tmp_path / "t.safetensors"), "--schemes")
    assert refused.returncode == 2 and "--schemes" in refused.stderr
