"""``report`` survives bad records and says so: a record file that is no valid record is skipped
with a warning naming it and the problem, a record of a model, dataset, benchmark, split or
profile the library does not know is listed and named, never left out in silence, and every
file the reports write is written atomically."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from matplotlib.figure import Figure

from refseg_lib.paths import atomic_write, atomic_write_text
from refseg_lib.records import (
    RecordWarning,
    RunRecord,
    load_run_records,
    read_run_record,
    write_run_record,
)
from refseg_lib.reports import build_reports, save_figure, write_index, write_table

GOOD = "dmn__base__shapes-refshape__val__quick.json"


def good(**changes) -> RunRecord:
    """A complete DMN record (every metric DMN's tables read), trained 10 steps."""
    fields = dict(model="dmn", variant="base", dataset="shapes", style="refshape", split="val",
                  profile="quick",
                  config={"train": {"max_steps": 10}, "eval_samples": 5, "eval_thresholds": [0.5]},
                  metrics={"overall_iou": 0.3, "mean_iou": 0.2, "n": 5,
                           **{f"Pr@0.{k}": 0.1 for k in range(5, 10)}},
                  train_time_s=1.0, hardware={"device": "cpu", "device_name": "cpu"},
                  git_revision="abc1234", created="2025-01-01T00:00:00+00:00",
                  source="tests/test_bad_records.py", curve=[{"step": 10, "overall_iou": 0.3}])
    return RunRecord(**{**fields, **changes})


def stored(**changes) -> bytes:
    """The good record's JSON with fields changed (``None``: the field removed)."""
    data = {**good().to_dict(), **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode("utf-8")


def with_metrics(**changes) -> bytes:
    return stored(metrics={**good().metrics, **changes})


# ---------------------------------------------------------------------------------------------
# A bad record file is skipped with a warning that names it; the others are loaded
# ---------------------------------------------------------------------------------------------

BAD = {  # id: (the file's bytes, the problem the warning names)
    "invalid-json": (b'{"model": ', r"not valid JSON \(line 1 column 11: Expecting value\)"),
    "empty-file": (b"", "the file is empty"),
    "not-utf8": (b'{"model": "\xff"}', r"not UTF-8 text \(byte 0xff at offset 11\)"),
    "not-an-object": (b"[1, 2]", "the file holds an array, not a JSON object of record fields"),
    "unknown-field": (stored(colour="red"), r"unknown run record fields \['colour'\]; known: "),
    "missing-key-field": (stored(split=None), "no 'split' field; a record names its run by "
                                              "model, variant, dataset, style, split, profile"),
    "empty-key-field": (stored(split=""), "a run record needs a non-empty 'split'"),
    "key-field-number": (stored(model=3), "'model' is a number, not a string"),
    "metrics-string": (stored(metrics="high"), "'metrics' is a string, not an object"),
    "config-array": (stored(config=[]), "'config' is an array, not an object"),
    "metric-string": (with_metrics(overall_iou="0.5"),
                      "metric 'overall_iou' is a string, not a number or null"),
    "metric-bool": (with_metrics(n=True), "metric 'n' is true or false, not a number or null"),
    "time-string": (stored(train_time_s="fast"),
                    "'train_time_s' is a string, not a number or null"),
    "curve-object": (stored(curve={}), "'curve' is an object, not an array"),
    "curve-point": (stored(curve=[0.5]),
                    "'curve' holds a number, not an object of metrics per point"),
    "metric-clash": (with_metrics(model=1),
                     r"metric names \['model'\] are names of record fields; rename the metrics"),
}
FIX = "; fix or delete the file, or run its experiment again to rewrite it"


@pytest.mark.parametrize("content, problem", BAD.values(), ids=BAD.keys())
def test_a_bad_record_is_skipped_with_a_warning_naming_it(tmp_path, content, problem):
    runs = tmp_path / "runs"
    write_run_record(good(), runs)
    bad = runs / "bad.json"
    bad.write_bytes(content)
    expected = f"skipped {re.escape(str(bad))}: {problem}"
    with pytest.warns(RecordWarning, match=expected) as caught:
        records = load_run_records(runs)
    assert [str(w.message) for w in caught if w.category is RecordWarning][0].endswith(FIX)
    assert len(caught) == 1
    assert list(records["path"].map(lambda p: p.rsplit("/", 1)[-1])) == [GOOD]
    with pytest.raises(ValueError, match=f"{re.escape(str(bad))} is not a valid run record: "
                                         f"{problem}"):
        read_run_record(bad)  # one record asked for: an error naming the file
    written = build_reports(records, tmp_path / "reports", names=["dmn", "runs"])
    assert (tmp_path / "reports" / "dmn_table1_shapes-refshape-quick.md") in written
    assert GOOD in (tmp_path / "reports" / "runs_shapes-quick.md").read_text()


def test_an_unreadable_record_file_is_skipped_too(tmp_path):
    runs = tmp_path / "runs"
    write_run_record(good(), runs)
    (runs / "folder.json").mkdir()
    with pytest.warns(RecordWarning, match=f"skipped {re.escape(str(runs / 'folder.json'))}: "
                                           r"it cannot be read \(Is a directory\)" + FIX):
        records = load_run_records(runs)
    assert len(records) == 1


def test_report_prints_the_warning_and_writes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    write_run_record(good(), tmp_path / "reports" / "runs")
    (tmp_path / "reports" / "runs" / "bad.json").write_text("{", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "refseg_lib", "report"], capture_output=True,
                          text=True, env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RecordWarning: skipped " in done.stderr and "bad.json: not valid JSON" in done.stderr
    assert "dmn_table1_shapes-refshape-quick.md" in done.stdout


# ---------------------------------------------------------------------------------------------
# A record of what the library does not know is listed and named
# ---------------------------------------------------------------------------------------------

UNKNOWN = {  # id: (the record's key changed, the catalogue that lists it, the note)
    "model": ({"model": "foo"}, "runs_shapes-quick",
              "1 record of a model the library does not know: 'foo' "
              "(foo__base__shapes-refshape__val__quick.json); no paper's table reads it. Known "
              "models: cmsa, dmn, lstm_cnn, m3att, mcn, only_vm, reference, ris; register the "
              "model (refseg_lib.models.register_model) or correct the records' model."),
    "split": ({"split": "trainval"}, "runs_shapes-quick",
              "1 record of a split the library does not know: 'trainval' "
              "(dmn__base__shapes-refshape__trainval__quick.json); no paper's number stands "
              "beside it. Known splits: train, val, testA, testB, testC, test; correct the "
              "records' split, or add it to reports.SPLIT_ORDER."),
    "dataset": ({"dataset": "mydata", "style": ""}, "runs_mydata-quick",
                "1 record of a dataset the library does not know: 'mydata' "
                "(dmn__base__mydata__val__quick.json); no paper's number stands beside it. "
                "Known datasets: shapes, refcoco, refcoco+, refcocog, refclef; correct the "
                "records' dataset, or add the dataset to the library."),
    "benchmark": ({"style": "zigzag"}, "runs_shapes-quick",
                  "1 record of a benchmark the library does not know: 'shapes/zigzag' "
                  "(dmn__base__shapes-zigzag__val__quick.json); no paper's number stands beside "
                  "it. Known benchmarks: shapes/refshape, shapes/refshape+, shapes/refshape-g, "
                  "refcoco/unc, refcoco/google, refcoco+/unc, refcocog/umd, refcocog/google, "
                  "refclef/unc, refclef/berkeley; correct the records' style."),
    "profile": ({"profile": "weird"}, "runs_shapes-weird",
                "1 record of a profile the library does not know: 'weird' "
                "(dmn__base__shapes-refshape__val__weird.json); no recipe's budget stands beside "
                "it (its scale is unknown). Known profiles: quick, paper; correct the records' "
                "profile, or add it to experiments.PROFILES."),
}


@pytest.mark.parametrize("key, catalogue, note", UNKNOWN.values(), ids=UNKNOWN.keys())
def test_a_record_the_library_does_not_know_is_listed_and_named(tmp_path, key, catalogue, note):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    write_run_record(good(), runs)
    odd = write_run_record(good(**key), runs)
    records = load_run_records(runs)
    with pytest.warns(RecordWarning, match=re.escape(note)):
        build_reports(records, out, names=["runs"])
    listed = pd.read_csv(out / f"{catalogue}.csv", dtype=str, keep_default_na=False)
    row = {k: v for k, v in key.items() if k in listed.columns}
    assert any(all(r[k] == v for k, v in row.items()) for _, r in listed.iterrows())
    assert f"- {note}\n" in (out / f"{catalogue}.md").read_text()  # the catalogue's note
    index = (out / "README.md").read_text()
    assert "Records the library does not know" in index and f"- {note}\n" in index
    assert odd.name in index


def test_reports_of_unknown_records_and_of_records_without_times_do_not_crash(tmp_path):
    """Every report, built from records of every unknown kind beside one without train time."""
    runs = tmp_path / "runs"
    write_run_record(good(variant="untimed", train_time_s=None), runs)
    for key, _, _ in UNKNOWN.values():
        write_run_record(good(**key), runs)
    with pytest.warns(RecordWarning) as caught:
        written = build_reports(load_run_records(runs), tmp_path / "reports")
    assert len([w for w in caught if w.category is RecordWarning]) == len(UNKNOWN)
    assert {"runs_shapes-quick.md", "runs_mydata-quick.md", "runs_shapes-weird.md",
            "README.md"} <= {p.name for p in written}


def test_known_records_get_no_note(tmp_path):
    write_run_record(good(), tmp_path / "runs")
    build_reports(load_run_records(tmp_path / "runs"), tmp_path / "reports", names=["runs"])
    for name in ("README.md", "runs_shapes-quick.md"):
        assert "does not know" not in (tmp_path / "reports" / name).read_text()


# ---------------------------------------------------------------------------------------------
# Every write is atomic: a failed write leaves the old file and no temporary file
# ---------------------------------------------------------------------------------------------


def _figure(value: float) -> Figure:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [0, value])
    return fig


WRITERS = {  # id: (write version 0 or 1 under a folder, the files it writes)
    "table": (lambda out, v: write_table(pd.DataFrame({"a": [v]}), "t", f"T{v}", out_dir=out),
              ["t.md", "t.csv"]),
    "figure": (lambda out, v: save_figure(_figure(v), "f", out), ["figures/f.png"]),
    "index": (lambda out, v: write_index([out / "t.md"] * v, out), ["README.md"]),
    "record": (lambda out, v: write_run_record(good(train_time_s=float(v)), out),
               [GOOD]),
    "text": (lambda out, v: atomic_write_text(out / "x.txt", f"v{v}\n"), ["x.txt"]),
}


@pytest.mark.parametrize("write, names", WRITERS.values(), ids=WRITERS.keys())
def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch, write, names):
    (tmp_path / "t.md").write_text("# T\n", encoding="utf-8")  # what the index links
    write(tmp_path, 0)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {tmp_path / n for n in names} <= set(before)

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)  # the new bytes are written, not yet in place
    with pytest.raises(OSError, match="No space left"):
        write(tmp_path, 1)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_write_that_stops_halfway_leaves_the_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "report.md", "old\n")

    def halfway(f):
        f.write(b"ne")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, halfway)
    assert path.read_bytes() == b"old\n" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_atomic_write_text_keeps_the_newlines_as_given(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "one\ntwo\r\nthree é")
    assert path.read_bytes() == b"one\ntwo\r\nthree \xc3\xa9"
    assert atomic_write_text(path, "é", encoding="latin-1").read_bytes() == b"\xe9"
