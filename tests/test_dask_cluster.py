"""rowquant.dask on a dask.distributed LocalCluster of 2 worker processes (loopback only, started
and closed here): shards written by the workers are byte for byte what quantize of the whole
array saves, lookups across them equal one table's, and a worker killed mid-run ends either in
a complete, valid set of files (the task run again) or in a clear error with no index."""

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rowquant as rq

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
rqdask = pytest.importorskip("rowquant.dask")
cloudpickle = pytest.importorskip("cloudpickle")

# the workers cannot import this test module by name: its functions travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def generated(rows, dim, chunk, pause=0.0):
    """A Dask array made block by block from a seeded source, each block taking ``pause``
    seconds, as a table too large to hold would be."""

    def block(block_info=None):
        (start, stop), _ = block_info[None]["array-location"]
        time.sleep(pause)
        rng = np.random.default_rng([7, start])
        return rng.standard_normal((stop - start, dim), dtype=np.float32)

    chunks = (tuple(min(chunk, rows - a) for a in range(0, rows, chunk)), (dim,))
    return da.map_blocks(block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), np.float32))


def cluster(**config):
    import dask

    with dask.config.set(config):
        return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                        dashboard_address="127.0.0.1:0", host="127.0.0.1",
                                        worker_dashboard_address=None)


@pytest.fixture(scope="module")
def client():
    with cluster() as local, distributed.Client(local) as connected:
        yield connected


def killer(client, killed):
    """A progress callback that kills one worker process (SIGKILL) when the first shard is
    done, noting its pid in ``killed``."""

    def kill_one(done, total):
        if not killed:
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    return kill_one


def expected_shards(x, rows_per_shard, **options):
    E = x.compute(scheduler="sync")
    return E, [rq.quantize(E[a : a + rows_per_shard], **options)
               for a in range(0, len(E), rows_per_shard)]


@pytest.mark.parametrize("options", [{}, {"bits": 4}, {"scale_dtype": "bfloat16"}])
def test_workers_write_the_bytes_of_quantize(client, tmp_path, options):
    x = generated(5000, 48, 700)
    written = rqdask.quantize(x, **options).to_safetensors_shards(
        tmp_path, rows_per_shard=1250, report=True)
    assert written.shards == 4
    E, parts = expected_shards(x, 1250, **options)
    for number, part in enumerate(parts):
        part.save(tmp_path / "expected.safetensors")
        name = f"table-{number + 1:05d}-of-00004.safetensors"
        assert (tmp_path / name).read_bytes() == (tmp_path / "expected.safetensors").read_bytes()
    os.remove(tmp_path / "expected.safetensors")
    one = rq.quantize(E, **options)
    sharded = rq.load(tmp_path)
    ids = np.random.default_rng(0).integers(0, 5000, (300, 20))
    assert np.array_equal(sharded.bag(ids), one.bag(ids))
    assert np.array_equal(sharded.take(ids), one.take(ids))
    single = rq.error_report(E, one)
    assert np.array_equal(written.report.row_cosine, single.row_cosine)
    # the distributed error report, on its own, agrees too
    report = rqdask.error_report(x, **options)
    assert np.array_equal(report.row_max_error, single.row_max_error)


def test_a_worker_killed_mid_run_is_replaced_and_the_files_are_complete(client, tmp_path):
    x = generated(6000, 16, 500, pause=0.4)
    killed = []
    written = rqdask.quantize(x).to_safetensors_shards(tmp_path,
                                                        progress=killer(client, killed))
    assert killed and written.shards == 12
    E, parts = expected_shards(x, 500)
    sharded = rq.load(tmp_path)
    for shard, part in zip(sharded.shards, parts):
        assert np.array_equal(shard.codes, part.codes) and np.array_equal(shard.scales, part.scales)
    names = sorted(os.listdir(tmp_path))
    assert names == sorted([f"table-{n:05d}-of-00012.safetensors" for n in range(1, 13)]
                           + ["table.safetensors.index.json"]), names
    client.wait_for_workers(2, timeout=60)  # the nanny brought it back


def test_with_no_retries_a_killed_worker_is_a_clear_error_and_no_index(tmp_path):
    x = generated(6000, 16, 500, pause=0.4)
    with cluster(**{"distributed.scheduler.allowed-failures": 0}) as local, \
            distributed.Client(local) as connected:
        with pytest.raises(distributed.KilledWorker):
            rqdask.quantize(x).to_safetensors_shards(tmp_path, progress=killer(connected, []))
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".index.json")]
    with pytest.raises(ValueError, match="without a sharded table's index"):
        rq.load(tmp_path)
    # whatever shards were written are whole files (written atomically)
    for path in Path(tmp_path).glob("table-*.safetensors"):
        assert len(rq.load(path)) == 500


def test_quantize_file_with_workers(tmp_path):
    E = np.random.default_rng(3).standard_normal((3000, 20)).astype(np.float32)
    folder = tmp_path / "in"
    folder.mkdir()
    for number, start in enumerate(range(0, 3000, 1000)):
        np.save(folder / f"part{number}.npy", E[start : start + 1000])
    summary = rq.quantize_file(folder, tmp_path / "out", workers=2, chunk_rows=400,
                               rows_per_shard=1500, report=True)
    assert (summary.rows, summary.dim) == (3000, 20)
    sharded = rq.load(tmp_path / "out")
    assert [len(shard) for shard in sharded.shards] == [1500, 1500]
    assert np.array_equal(sharded.dequantize(), rq.quantize(E).dequantize())
    assert summary.report.rows == 3000
    # one file out, from the same cluster's work
    summary = rq.quantize_file(folder, tmp_path / "one.safetensors", workers=2, chunk_rows=400)
    rq.quantize(E).save(tmp_path / "expected.safetensors")
    assert (tmp_path / "one.safetensors").read_bytes() == \
        (tmp_path / "expected.safetensors").read_bytes()
