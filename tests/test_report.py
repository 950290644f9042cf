"""error_report against figures computed here independently, in float64 with plain numpy, and
its chunked, file-based and in-memory forms against each other."""

import numpy as np
import pytest
import safetensors.numpy

import rowquant as rq


def table(rows, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def expected_figures(E, qe):
    exact = E.astype(np.float64)
    # the float32 values a user gets back, computed with plain numpy
    centered = qe.codes.astype(np.float32) - np.float32(128)
    approx = (centered * qe.scales[:, None]).astype(np.float64)
    error = exact - approx
    norms = np.linalg.norm(exact, axis=1) * np.linalg.norm(approx, axis=1)
    dots = (exact * approx).sum(axis=1)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 0.0)
    cosine[(np.abs(exact).sum(1) == 0) & (np.abs(approx).sum(1) == 0)] = 1.0
    return {
        "max": np.abs(error).max(),
        "mean": np.abs(error).mean(),
        "relative": np.linalg.norm(error) / np.linalg.norm(exact),
        "snr": 10 * np.log10((exact**2).sum() / (error**2).sum()),
        "row_max": np.abs(error).max(axis=1),
        "cosine": cosine,
    }


@pytest.mark.parametrize("chunk_rows", [None, 1, 37, 10_000])
def test_figures_match_an_independent_computation(chunk_rows):
    E = table(500, 48, seed=1) * np.logspace(-3, 3, 500, dtype=np.float32)[:, None]
    E[17] = 0
    qe = rq.quantize(E)
    report = rq.error_report(E, qe, chunk_rows=chunk_rows, worst=5)
    want = expected_figures(E, qe)
    assert report.max_abs_error == pytest.approx(want["max"], rel=1e-6)
    assert report.mean_abs_error == pytest.approx(want["mean"], rel=1e-9)
    assert report.relative_error == pytest.approx(want["relative"], rel=1e-9)
    assert report.snr_db == pytest.approx(want["snr"], rel=1e-9)
    np.testing.assert_allclose(report.row_max_error, want["row_max"], rtol=1e-6)
    np.testing.assert_allclose(report.row_cosine, want["cosine"], rtol=1e-12)
    assert report.row_cosine[17] == 1.0
    assert report.cosine_min == pytest.approx(want["cosine"].min(), rel=1e-12)
    assert report.cosine_p0_1 == pytest.approx(np.percentile(want["cosine"], 0.1), rel=1e-12)
    assert report.cosine_median == pytest.approx(np.median(want["cosine"]), rel=1e-12)
    np.testing.assert_array_equal(report.worst_rows, np.argsort(want["cosine"], kind="stable")[:5])
    np.testing.assert_array_equal(report.scales, qe.scales)
    # the paper's bound: no value is off by more than half its row's scale
    assert np.all(report.row_max_error <= qe.scales * np.float32(0.5) * (1 + 1e-6))


def test_exact_tables_have_infinite_snr():
    E = np.array([[127.0, -1.0, 0.0], [0, 0, 0]], np.float32)  # representable exactly
    report = rq.error_report(E, rq.quantize(E))
    assert report.max_abs_error == 0 and report.relative_error == 0
    assert report.snr_db == float("inf") and report.cosine_min == 1.0


def test_files_give_the_same_report_as_arrays(tmp_path):
    E = table(300, 20, seed=2)
    qe = rq.quantize(E)
    np.save(tmp_path / "E.npy", E)
    safetensors.numpy.save_file({"emb": E, "bias": np.zeros(3, np.float32)}, str(tmp_path / "m"))
    qe.save(tmp_path / "q")
    in_memory = rq.error_report(E, qe).to_dict()
    assert _close(rq.error_report(tmp_path / "E.npy", tmp_path / "q", chunk_rows=64).to_dict(), in_memory)
    from_tensor = rq.error_report(str(tmp_path / "m"), rq.load(tmp_path / "q"), tensor="emb")
    assert _close(from_tensor.to_dict(), in_memory)


def _close(got, want):
    assert got["worst_rows"] == want["worst_rows"]
    for key in ("max_abs_error", "mean_abs_error", "relative_error", "snr_db"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    assert got["cosine"] == want["cosine"]
    return True


def test_mismatched_shapes_and_bad_arguments(tmp_path):
    qe = rq.quantize(table(10, 4))
    with pytest.raises(ValueError, match=r"original has shape \(10, 5\) but the quantized table has \(10, 4\)"):
        rq.error_report(table(10, 5), qe)
    with pytest.raises(TypeError, match="QuantizedEmbedding or a path"):
        rq.error_report(table(10, 4), qe.codes)
    with pytest.raises(TypeError, match="real floating-point"):
        rq.error_report(np.zeros((10, 4), np.int64), qe)


def test_empty_table_report_is_json_ready():
    report = rq.error_report(np.zeros((0, 4), np.float32), rq.quantize(np.zeros((0, 4), np.float32)))
    data = report.to_dict()
    assert data["rows"] == 0 and data["cosine"] == {"min": None, "p0.1": None, "median": None}
    assert data["worst_rows"] == []


def test_text_form_names_the_worst_rows():
    E = table(50, 8, seed=3)
    report = rq.error_report(E, rq.quantize(E), worst=2)
    text = str(report)
    assert "SNR" in text and "worst rows" in text
    assert f"row {int(report.worst_rows[0])} " in text
