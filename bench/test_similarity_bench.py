"""bench/similarity.py's ``--quick`` path as a function: it prints its tables and the targets,
writes its JSON, and its quality numbers are fractions. Nothing is asserted about speed.

Not part of the default test run (``testpaths`` holds ``tests`` and ``src/rowquant``). Run with

    python -m pytest bench/test_similarity_bench.py -q

Skipped without faiss or usearch (the ``bench`` extra).
"""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("faiss")
pytest.importorskip("usearch")

SCRIPT = Path(__file__).resolve().parent / "similarity.py"


@pytest.fixture(scope="module")
def similarity():
    spec = importlib.util.spec_from_file_location("bench_similarity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(similarity, tmp_path_factory):
    path = tmp_path_factory.mktemp("similarity") / "quick.json"
    # the smallest tables, one timed call each: a smoke run of every section
    result = similarity.main(["--quick", "--tables", "recsys", "--json", str(path)])
    return result, json.loads(path.read_text())


def test_prints_every_section_and_the_targets(quick_run):
    result, saved = quick_run
    assert set(result["sections"]) == {"one", "batch", "search", "quality-random",
                                       "quality-glove"}
    for section in result["sections"].values():
        assert section["rows"]
    assert result["targets"]
    assert all(target["pass"] in (True, False, None) for target in result["targets"])
    assert saved["targets"] == json.loads(json.dumps(result["targets"]))


def test_the_tables_are_markdown(similarity):
    table = similarity.markdown(["a", "b"], [[1, "2.00x"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2.00x |"]


def test_quality_numbers_are_fractions(quick_run):
    result, _ = quick_run
    random_records = result["sections"]["quality-random"]["records"]
    assert len(random_records) == 4  # 64 and 300 dims, dot and cosine
    for record in random_records:
        for key in ("recall_fast_vs_exact", "recall_exact_vs_float64"):
            assert 0.0 <= record[key] <= 1.0
        assert 0 <= record["queries_differ_beyond_ties"] <= record["queries_ids_differ"]
    for record in result["sections"]["quality-glove"]["records"]:  # none without the package
        recalls = [value for key, value in record.items()
                   if key.startswith(("rowquant ", "faiss ", "usearch "))]
        assert recalls
        assert all(0.0 <= value <= 1.0 for value in recalls)


def test_speed_records_have_times_or_reasons(quick_run):
    result, _ = quick_run
    for key in ("one", "batch", "search"):
        for record in result["sections"][key]["records"]:
            for precision in ("fast", "exact"):
                timing = record[precision]
                assert (timing["s"] is not None and timing["s"] > 0) or timing.get("skipped")


def test_search_helpers(similarity):
    import numpy as np

    scores = np.array([[1.0, 3.0, 3.0, 2.0]])
    assert similarity.top_rows(scores, 3).tolist() == [[1, 2, 3]]
    ids = np.array([[5, 7, 9], [1, 2, 3]])
    assert similarity.drop_self(ids, np.array([7, 4]), 2).tolist() == [[5, 9], [1, 2]]
    assert similarity.recall(np.array([[1, 2]]), np.array([[2, 3]])) == 0.5
