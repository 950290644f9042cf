"""rowquant.dask on Dask's local schedulers, and sharded tables (rq.load of a folder): every
block quantized once, shards byte for byte what quantize of the whole array saves for their
rows, lookups across shards bit for bit those of one table, and broken folders named."""

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import rowquant as rq
from rowquant import _shards

da = pytest.importorskip("dask.array")
rqdask = pytest.importorskip("rowquant.dask")

SCHEMES = [
    {},
    {"scale_dtype": "bfloat16"},
    {"scale_dtype": "float16", "scale_rounding": "truncate"},
    {"bits": 4},
    {"bits": 2, "range_search": True},
]


def table(rows, dim, seed=0):
    values = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    values[3] = 0  # a zero row
    return values


def save_bytes(qe, path):
    qe.save(path)
    return Path(path).read_bytes()


@pytest.mark.parametrize("options", SCHEMES, ids=lambda o: "-".join(map(str, o.values())) or "u8")
def test_codes_scales_and_table_equal_quantize_of_the_whole(options):
    E = table(1003, 37)
    q = rqdask.quantize(da.from_array(E, chunks=(250, 37)), **options)
    whole = rq.quantize(E, **options)
    assert np.array_equal(q.codes.compute(scheduler="sync"), whole.codes)
    assert np.array_equal(q.scales.compute(scheduler="sync"), whole.scales)
    assert q.scales.dtype == whole.scales.dtype
    if "bits" in options:
        assert np.array_equal(q.biases.compute(scheduler="sync"), whole.biases)
    computed = q.compute(scheduler="sync")
    assert computed.scheme == whole.scheme
    assert np.array_equal(computed.dequantize(), whole.dequantize())


def test_each_block_is_quantized_once_for_codes_and_scales(monkeypatch):
    calls = []
    lock = threading.Lock()
    original = rqdask._quantize_block

    def counting(block, options):
        with lock:
            calls.append(len(block))
        return original(block, options)

    monkeypatch.setattr(rqdask, "_quantize_block", counting)
    E = table(1000, 16)
    q = rqdask.quantize(da.from_array(E, chunks=(100, 16)))
    import dask

    codes, scales = dask.compute(q.codes, q.scales, scheduler="threads")
    assert sorted(calls) == [100] * 10  # ten blocks, each once
    assert np.array_equal(codes, rq.quantize(E).codes) and np.array_equal(scales, rq.quantize(E).scales)


def test_columns_chunked_are_rechunked_with_a_warning():
    E = table(200, 40)
    with pytest.warns(rqdask.RechunkWarning, match="chunked across its columns"):
        q = rqdask.quantize(da.from_array(E, chunks=(50, 16)))
    assert np.array_equal(q.codes.compute(scheduler="sync"), rq.quantize(E).codes)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="dask.array.Array"):
        rqdask.quantize(np.zeros((3, 3), np.float32))
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        rqdask.quantize(da.zeros((3, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="2-D"):
        rqdask.quantize(da.zeros((3,), dtype=np.float32))
    with pytest.raises(ValueError):
        rqdask.quantize(da.zeros((3, 3), dtype=np.float32), bits=3)
    bad = table(100, 4)
    bad[57, 2] = np.nan
    q = rqdask.quantize(da.from_array(bad, chunks=(50, 4)))
    with pytest.raises(ValueError, match="x has nan at row 57, column 2"):
        q.codes.compute(scheduler="sync")
    big = table(100, 4).astype(np.float64)
    big[81, 0] = 1e300
    with pytest.raises(ValueError, match="x has 1e.300, which overflows float32, at row 81"):
        rqdask.quantize(da.from_array(big, chunks=(50, 4))).compute(scheduler="sync")


@pytest.mark.parametrize("options", SCHEMES, ids=lambda o: "-".join(map(str, o.values())) or "u8")
def test_shards_are_the_bytes_quantize_saves_for_their_rows(tmp_path, options):
    E = table(1000, 24)
    q = rqdask.quantize(da.from_array(E, chunks=(128, 24)), **options)
    written = q.to_safetensors_shards(tmp_path / "out", rows_per_shard=300, scheduler="threads")
    assert (written.shards, written.rows, written.dim) == (4, 1000, 24)
    index = json.loads(Path(written.index).read_text())
    assert [s["first_row"] for s in index["shards"]] == [0, 300, 600, 900]
    assert index["metadata"]["scheme"] == rq.quantize(E[:1], **options).scheme.name
    for entry in index["shards"]:
        a, n = entry["first_row"], entry["rows"]
        expected = save_bytes(rq.quantize(E[a : a + n], **options), tmp_path / "expected")
        assert (tmp_path / "out" / entry["file"]).read_bytes() == expected
        assert entry["bytes"] == len(expected)
    assert written.bytes == sum(s["bytes"] for s in index["shards"])
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        [s["file"] for s in index["shards"]] + ["table.safetensors.index.json"])


@pytest.mark.parametrize("options", SCHEMES, ids=lambda o: "-".join(map(str, o.values())) or "u8")
def test_lookups_across_shards_equal_one_table(tmp_path, options):
    E = table(2000, 33, seed=5)
    q = rqdask.quantize(da.from_array(E, chunks=(300, 33)), **options)
    q.to_safetensors_shards(tmp_path, scheduler="sync")
    sharded = rq.load(tmp_path)
    one = rq.quantize(E, **options)
    assert isinstance(sharded, rq.ShardedTable) and len(sharded.shards) == 7
    assert sharded.shape == one.shape and sharded.scheme == one.scheme
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 2000, 5000)  # repeats, every shard, any order
    assert np.array_equal(sharded.take(ids), one.take(ids))
    assert np.array_equal(sharded.take(ids.reshape(50, 100)), one.take(ids.reshape(50, 100)))
    offsets = np.sort(rng.integers(0, 5000, 400))
    offsets[0] = 0
    weights = rng.standard_normal(5000).astype(np.float32)
    for kwargs in ({}, {"mode": "mean"}, {"weights": weights}, {"padding_idx": int(ids[7])},
                   {"mode": "mean", "padding_idx": 1999}):
        assert np.array_equal(sharded.bag(ids, offsets, **kwargs), one.bag(ids, offsets, **kwargs)), kwargs
    closed = np.append(offsets, len(ids))
    assert np.array_equal(sharded.bag(ids, closed, include_last_offset=True),
                          one.bag(ids, closed, include_last_offset=True))
    assert np.array_equal(sharded.bag(ids.reshape(250, 20)), one.bag(ids.reshape(250, 20)))
    assert np.array_equal(sharded[1999], one[1999]) and np.array_equal(sharded[-1], one[-1])
    assert np.array_equal(sharded[250:610:3], one[250:610:3])
    assert np.array_equal(sharded[[5, 1500, -2]], one[[5, 1500, -2]])
    mask = np.arange(2000) % 7 == 3
    assert np.array_equal(sharded[mask], one[mask])
    assert np.array_equal(sharded[:, :8], one[:, :8])
    assert np.array_equal(sharded[17, 3:9], one[17, 3:9])
    assert np.array_equal(sharded[[4, 1999], 2], one[[4, 1999], 2])
    assert np.array_equal(sharded.bag(ids.reshape(250, 20), mode="max"),
                          one.bag(ids.reshape(250, 20), mode="max"))
    assert np.array_equal(sharded.dequantize(), one.dequantize())
    assert sharded.take([]).shape == (0, 33)
    for threads in (1, 2):
        assert np.array_equal(sharded.take(ids, threads=threads), one.take(ids))


def test_similarity_across_shards_equals_one_table(tmp_path):
    E = table(3000, 32, seed=8)
    rqdask.quantize(da.from_array(E, chunks=(700, 32))).to_safetensors_shards(
        tmp_path, scheduler="sync")
    sharded, one = rq.load(tmp_path), rq.quantize(E)
    queries = np.random.default_rng(2).standard_normal((5, 32)).astype(np.float32)
    assert np.array_equal(sharded.dot(queries), one.dot(queries))
    for metric in ("dot", "cosine"):
        scores, rows = sharded.search(queries, 10, metric=metric)
        expected = one.search(queries, 10, metric=metric)
        assert np.array_equal(rows, expected[1]) and np.array_equal(scores, expected[0])
    scores, rows = sharded.search(queries[0], 5)
    assert np.array_equal(rows, one.search(queries[0], 5)[1])


def test_bad_ids_are_named_with_the_whole_tables_numbers(tmp_path):
    E = table(100, 8)
    rqdask.quantize(da.from_array(E, chunks=(30, 8))).to_safetensors_shards(tmp_path, scheduler="sync")
    sharded = rq.load(tmp_path)
    with pytest.raises(IndexError, match=r"ids\[2\] = 100 is out of range for a table of 100 rows"):
        sharded.take([0, 5, 100])
    with pytest.raises(IndexError, match=r"-1"):
        sharded.bag([[0, -1]])
    with pytest.raises(TypeError, match="integers"):
        sharded.take([0.5])
    with pytest.raises(IndexError):
        sharded[100]


def shard_folder(tmp_path):
    E = table(500, 8)
    written = rqdask.quantize(da.from_array(E, chunks=(100, 8))).to_safetensors_shards(
        tmp_path, scheduler="sync")
    return written


def test_a_missing_shard_is_named_and_nothing_loads(tmp_path):
    shard_folder(tmp_path)
    os.remove(tmp_path / "table-00003-of-00005.safetensors")
    with pytest.raises(ValueError, match="shard table-00003-of-00005.safetensors .* is missing"):
        rq.load(tmp_path)


def test_a_truncated_shard_is_named(tmp_path):
    shard_folder(tmp_path)
    path = tmp_path / "table-00002-of-00005.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"shard table-00002-of-00005.safetensors .* has \d+ bytes, the index says \d+ \(truncated"):
        rq.load(tmp_path / "table.safetensors.index.json")


def test_a_shard_that_lies_is_named(tmp_path):
    shard_folder(tmp_path)
    other = tmp_path / "other.safetensors"
    rq.quantize(table(100, 9)).save(other)
    target = tmp_path / "table-00004-of-00005.safetensors"
    data = other.read_bytes()
    target.write_bytes(data)
    index_path = tmp_path / "table.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["shards"][3]["bytes"] = len(data)
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="table-00004-of-00005.safetensors .* holds 100x9"):
        rq.load(tmp_path)


def test_folders_without_an_index_or_with_a_broken_one(tmp_path):
    with pytest.raises(ValueError, match="without a sharded table's index"):
        rq.load(tmp_path)
    (tmp_path / "t.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a sharded table's index"):
        rq.load(tmp_path)
    (tmp_path / "t.safetensors.index.json").write_text(json.dumps(
        {"format": "rowquant-shards", "version": 1, "metadata": {"rows": 5, "dim": 2,
         "scheme": "rowwise-symmetric-u8"},
         "shards": [{"file": "../x.safetensors", "first_row": 0, "rows": 5, "bytes": 1}]}))
    with pytest.raises(ValueError, match="not a name in the index's folder"):
        rq.load(tmp_path)


def test_a_failed_write_leaves_no_index(tmp_path):
    bad = table(400, 8)
    bad[350, 1] = np.inf
    q = rqdask.quantize(da.from_array(bad, chunks=(100, 8)))
    with pytest.raises(ValueError, match="x has inf at row 350, column 1"):
        q.to_safetensors_shards(tmp_path, scheduler="sync")
    assert not any(name.endswith(".index.json") for name in os.listdir(tmp_path))
    with pytest.raises(ValueError, match="without a sharded table's index"):
        rq.load(tmp_path)


def test_progress_and_report_in_the_same_pass(tmp_path):
    E = table(1000, 16)
    seen = []
    written = rqdask.quantize(da.from_array(E, chunks=(250, 16))).to_safetensors_shards(
        tmp_path, report=True, progress=lambda done, total: seen.append((done, total)),
        scheduler="threads")
    assert seen[-1] == (1000, 1000) and len(seen) == 4
    single = rq.error_report(E, rq.quantize(E))
    assert np.array_equal(written.report.row_cosine, single.row_cosine)
    assert np.array_equal(written.report.row_max_error, single.row_max_error)
    assert np.array_equal(written.report.worst_rows, single.worst_rows)
    assert written.report.relative_error == pytest.approx(single.relative_error, rel=1e-12)


@pytest.mark.parametrize("options", [{}, {"bits": 4}])
def test_error_report_equals_the_single_machine_one(options):
    E = table(900, 20, seed=3)
    report = rqdask.error_report(da.from_array(E, chunks=(200, 20)), scheduler="threads",
                                 **options)
    single = rq.error_report(E, rq.quantize(E, **options))
    assert np.array_equal(report.row_cosine, single.row_cosine)
    assert np.array_equal(report.scales, single.scales)
    assert report.max_abs_error == single.max_abs_error
    assert report.mean_abs_error == pytest.approx(single.mean_abs_error, rel=1e-12)


def test_from_files_reads_a_folder_of_npy_and_safetensors(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    E = table(700, 12)
    np.save(tmp_path / "a.npy", E[:300])
    safetensors_numpy.save_file({"emb": E[300:650].astype(np.float16)}, str(tmp_path / "b.safetensors"))
    np.save(tmp_path / "c.npy", E[650:].astype(np.float64))
    x = rqdask.from_files(tmp_path, chunk_rows=128)
    expected = np.concatenate([E[:300], E[300:650].astype(np.float16).astype(np.float32), E[650:]])
    assert x.shape == (700, 12)
    assert np.array_equal(x.compute(scheduler="sync"), expected)
    np.save(tmp_path / "d.npy", E[:5, :3])
    with pytest.raises(ValueError, match="d.npy has rows of 3 values"):
        rqdask.from_files(tmp_path)


def test_zarr_round_trip(tmp_path):
    zarr = pytest.importorskip("zarr")
    E = table(1000, 24)
    for options in ({}, {"bits": 4}):
        q = rqdask.quantize(da.from_array(E, chunks=(300, 24)), **options)
        group = q.to_zarr(str(tmp_path / f"t{len(options)}.zarr"), scheduler="threads")
        whole = rq.quantize(E, **options)
        opened = zarr.open_group(str(tmp_path / f"t{len(options)}.zarr"), mode="r")
        assert np.array_equal(opened["codes"][:], whole.codes)
        assert np.array_equal(opened["scales"][:], whole.scales)
        assert opened["codes"].chunks[0] == 300
        assert opened.attrs["scheme"] == whole.scheme.name
        assert group.attrs["rows"] == 1000
    # a Zarr array of floats as input
    zarr.create_array(str(tmp_path / "E.zarr"), data=E, chunks=(128, 24))
    x = rqdask.from_files(tmp_path / "E.zarr")
    assert np.array_equal(rqdask.quantize(x).codes.compute(scheduler="sync"), rq.quantize(E).codes)


def test_write_shards_and_sharded_table_directly(tmp_path):
    E = table(300, 8)
    index = _shards.write_shards(tmp_path, [rq.quantize(E[:100]), rq.quantize(E[100:])],
                                 prefix="emb")
    assert os.path.basename(index) == "emb.safetensors.index.json"
    loaded = rq.load(index, mmap=False)
    assert np.array_equal(loaded.take(np.arange(300)), rq.quantize(E).dequantize())
    with pytest.raises(ValueError, match="width and scheme"):
        rq.ShardedTable([rq.quantize(E[:10]), rq.quantize(E[:10, :4])])


def test_a_table_of_one_shard(tmp_path):
    E = table(400, 8)
    _shards.write_shards(tmp_path, [rq.quantize(E)])
    loaded, one = rq.load(tmp_path), rq.quantize(E)
    ids = np.random.default_rng(0).integers(0, 400, (50, 6))
    assert np.array_equal(loaded.take(ids), one.take(ids))
    assert np.array_equal(loaded.bag(ids, padding_idx=int(ids[0, 0]), mode="mean"),
                          one.bag(ids, padding_idx=int(ids[0, 0]), mode="mean"))


def test_a_rerun_replaces_the_table_and_a_failed_one_leaves_none(tmp_path):
    E = table(600, 8)
    rqdask.quantize(da.from_array(E, chunks=(100, 8))).to_safetensors_shards(
        tmp_path, scheduler="sync")
    (tmp_path / "notes.txt").write_text("kept")
    # fewer shards: the six of the first run that the new index does not name are removed
    rqdask.quantize(da.from_array(E, chunks=(200, 8))).to_safetensors_shards(
        tmp_path, scheduler="sync")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"] + [
        f"table-0000{n}-of-00003.safetensors" for n in (1, 2, 3)] + [
        "table.safetensors.index.json"]
    assert np.array_equal(rq.load(tmp_path).dequantize(), rq.quantize(E).dequantize())
    # a rerun that fails after writing some shards of the same names leaves no index, so the
    # folder never loads as a mix of the two runs' shards
    bad = E.copy()
    bad[450, 0] = np.nan
    with pytest.raises(ValueError, match="row 450"):
        rqdask.quantize(da.from_array(bad * 2, chunks=(200, 8))).to_safetensors_shards(
            tmp_path, scheduler="sync")
    with pytest.raises(ValueError, match="without a sharded table's index"):
        rq.load(tmp_path)
