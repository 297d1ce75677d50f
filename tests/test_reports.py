"""Tests of refseg_lib.paper_numbers and refseg_lib.reports: the papers' figures, pivots,
tables beside the papers, written files, and reports as a pure function of the records."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil

import pandas as pd
import pytest

from refseg_lib import reports
from refseg_lib.paper_numbers import (
    BOX_ACC,
    GREF_UMD,
    IE,
    INFERENCE_TIME,
    MEAN_IOU,
    OVERALL_IOU,
    PAPER_NUMBERS,
    PARAMS,
    UNC,
    UNC_PLUS,
    paper_numbers,
)
from refseg_lib.records import load_run_records
from refseg_lib.reports import (
    PaperRef,
    beside_paper,
    build_reports,
    results_table,
    save_figure,
    write_table,
)


def values(frame: pd.DataFrame, by: str = "row") -> dict[str, float]:
    return dict(zip(frame[by], frame["value"], strict=True))


# ---------------------------------------------------------------------------------------------
# Paper numbers (checked against the paper texts)
# ---------------------------------------------------------------------------------------------


def test_dmn_table_1_has_six_rows_of_overall_iou_on_unc_testa():
    iou = paper_numbers("DMN", "Table 1", metric=OVERALL_IOU)
    assert values(iou) == {
        "Only VM": 30.92, "Only h_t in LM and SM": 54.80, "No skip connections in UM": 49.26,
        "No dynamic filters": 50.34, "No concatenation of r_t": 54.69, "DMN": 54.83,
    }
    assert set(iou.dataset) == {UNC} and set(iou.split) == {"testA"}
    only_vm = paper_numbers("DMN", "Table 1", row="Only VM")
    assert values(only_vm, "metric")["Pr@0.5"] == 15.26 and len(only_vm) == 6


def test_dmn_table_2_and_sru_figures():
    dmn = paper_numbers("DMN", "Table 2", row="DMN")
    by_split = {(d, s): v for d, s, v in zip(dmn.dataset, dmn.split, dmn.value, strict=True)}
    assert [by_split[UNC, s] for s in ("val", "testA", "testB")] == [49.78, 54.83, 45.13]
    assert [by_split[UNC_PLUS, s] for s in ("val", "testA", "testB")] == [38.88, 44.22, 32.29]
    assert len(dmn) == 8 and set(dmn.metric) == {OVERALL_IOU}
    params = paper_numbers("DMN", "Sec. 5.3", metric=PARAMS)
    assert values(params) == {"LM with SRU": 9, "SM with SRU": 10, "LM with LSTM": 24,
                              "SM with LSTM": 24.2}
    assert set(params.unit) == {"M"}
    speed = paper_numbers("DMN", "Sec. 5.3", unit="x")
    assert speed.value.tolist() == [3.0] and "approximate" in speed.note[0]


def test_cmsa_tables():
    ours = paper_numbers("CMSA", "Table 1", row="Ours")
    assert ours.value.tolist() == [58.32, 60.61, 55.09, 43.76, 47.60, 37.89, 39.98, 63.80]
    assert values(paper_numbers("CMSA", "Table 2")) == {
        "No attention": 45.63, "Word attention": 47.01, "Pixel attention": 47.84,
        "Word-pixel pair attention": 47.57, "Cross-modal self-attention": 50.12,
    }
    fusion = values(paper_numbers("CMSA", "Table 3", metric=OVERALL_IOU))
    assert fusion["CMSA+GF(Ours)"] == 58.32
    assert fusion["RMI-LSTM [17]"] == 45.18 and fusion["RRN-CNN [15]*"] == 46.95
    assert len(fusion) == 9
    assert set(paper_numbers("CMSA", "Table 3").split) == {"val"}


def test_mcn_tables():
    post = paper_numbers("MCN", "Table 1")
    assert values(post[post.metric == MEAN_IOU]) == {
        "w.o. post-processing": 61.61, "RoI Crop [10, 30]": 61.19, "Soft-NLS (ours)": 62.27,
        "ASNLS (ours)": 62.44}
    assert values(post[post.metric == IE])["ASNLS (ours)"] == 6.65
    ladder = paper_numbers("MCN", "Table 2", dataset=UNC)
    asnls = values(ladder[ladder.row == "+ASNLS"], "metric")
    assert asnls == {BOX_ACC: 80.08, MEAN_IOU: 62.44, IE: 6.65}
    assert values(ladder[ladder.metric == BOX_ACC])["MCN (Base)"] == 77.45
    assert set(paper_numbers("MCN", "Table 2").dataset) == {UNC, UNC_PLUS, GREF_UMD}
    structures = paper_numbers("MCN", "Table 3", metric=MEAN_IOU)
    assert values(structures)["Single_RES (scale=52^2)"] == 57.91
    speed = values(paper_numbers("MCN", "Table 4", metric=INFERENCE_TIME))
    assert speed["MCN (ours), darknet53"] == 56 and speed["MattNet [43], frcnn-resnet101"] == 367


def test_metric_types_never_mix():
    """DMN and CMSA report overall IoU; MCN's RES numbers are mean IoU."""
    ious = paper_numbers(metric=[OVERALL_IOU, MEAN_IOU])
    assert set(ious[ious.paper == "MCN"].metric) == {MEAN_IOU}
    # M3Att's row is the survey's; filed as overall IoU with the doubt in its note
    assert all("metric is uncertain" in n for n in paper_numbers("M3Att").note)
    assert set(ious[ious.paper != "MCN"].metric) == {OVERALL_IOU}
    assert set(paper_numbers("MCN").metric) <= {MEAN_IOU, BOX_ACC, IE, INFERENCE_TIME,
                                                 *(f"Pr@{x}" for x in (0.5, 0.6, 0.7, 0.8, 0.9))}


def test_paper_numbers_are_unique_frozen_and_filterable():
    frame = paper_numbers()
    key = ["paper", "table", "row", "dataset", "split", "metric"]
    assert not frame.duplicated(key).any()
    percent = frame[frame.unit == "%"]
    assert percent.value.between(0, 100).all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER_NUMBERS[0].value = 0.0  # type: ignore[misc]
    assert len(paper_numbers(paper=("DMN", "CMSA"), table="Table 2")) == 21 + 5
    with pytest.raises(ValueError, match="unknown field"):
        paper_numbers(model="DMN")


# ---------------------------------------------------------------------------------------------
# Records -> pivots
# ---------------------------------------------------------------------------------------------


def record(model: str, split: str, overall: float, *, mean: float = 0.5, variant: str = "default",
           dataset: str = "shapes", style: str | None = "refshape", created: str = "2025-01-01",
           **extra) -> dict:
    """A run record as ``load_run_records`` flattens it (metrics as columns)."""
    return {"model": model, "variant": variant, "dataset": dataset, "style": style,
            "split": split, "profile": "quick", "config": {"eval_thresholds": [0.5]},
            "overall_iou": overall, "mean_iou": mean, "Pr@0.5": mean / 2, "n": 300,
            "train_time_s": 1.0, "eval_time_s": 0.5, "samples_per_s": 100.0, "params": 1000,
            "hardware": {"device": "cpu"}, "git_revision": "abc1234", "created": created,
            "source": "notebooks/02_dmn.ipynb", **extra}


@pytest.fixture
def records() -> pd.DataFrame:
    rows = [record("only_vm", s, v) for s, v in (("testB", 0.25), ("val", 0.3), ("testA", 0.35))]
    rows += [record("lstm_cnn", s, v) for s, v in (("val", 0.4), ("testA", 0.45))]
    return pd.DataFrame(rows)


def test_results_table_pivots_in_a_fixed_order(records):
    table = results_table(records)
    assert list(table.columns) == ["val", "testA", "testB"]
    assert list(table.index) == [("lstm_cnn", "default"), ("only_vm", "default")]
    assert table.loc[("only_vm", "default"), "testA"] == 0.35
    assert math.isnan(table.loc[("lstm_cnn", "default"), "testB"])  # no run: no number
    shuffled = results_table(records.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(table, shuffled)


def test_results_table_several_metrics_and_given_order(records):
    table = results_table(records, index=("model",), columns=("split",),
                          metric=["mean_iou", "overall_iou"], order={"model": ["only_vm"]})
    assert list(table.index) == ["only_vm", "lstm_cnn"]
    assert list(table.columns.get_level_values("metric").unique()) == ["mean_iou", "overall_iou"]
    assert table.loc["only_vm", ("overall_iou", "val")] == 0.3
    flat = results_table(records, index=("model", "split"), columns=(), metric=["overall_iou"])
    assert list(flat.columns) == ["overall_iou"] and len(flat) == 5


def test_results_table_newest_record_wins_and_clashes_are_errors(records):
    rerun = pd.DataFrame([record("only_vm", "val", 0.9, created="2025-02-01")])
    table = results_table(pd.concat([rerun, records]))
    assert table.loc[("only_vm", "default"), "val"] == 0.9
    refcoco = pd.DataFrame([record("only_vm", "val", 0.1, dataset="refcoco", style=None)])
    with pytest.raises(ValueError, match="several runs share a cell"):
        results_table(pd.concat([records, refcoco]))
    assert results_table(pd.concat([records, refcoco]), index=("model", "dataset")).shape == (3, 3)
    with pytest.raises(ValueError, match="no column"):
        results_table(records, metric="IE")


# ---------------------------------------------------------------------------------------------
# Beside the papers
# ---------------------------------------------------------------------------------------------


def test_beside_paper_aligns_rows_and_converts_to_percent(records):
    ours = results_table(records, index=("model", "split"), columns=(),
                         metric=["overall_iou", "mean_iou", "Pr@0.5"])
    table = beside_paper(ours, {("only_vm", "testA"): ("DMN", "Table 1", "Only VM")})
    row = table.loc[("only_vm", "testA")]
    assert row[("ours (%)", "overall_iou")] == pytest.approx(35.0)
    assert row[("paper (%)", "overall_iou")] == 30.92
    assert row[("paper (%)", "Pr@0.5")] == 15.26
    assert math.isnan(row[("paper (%)", "mean_iou")])  # DMN reports overall IoU only
    assert row[("source", "")] == "DMN Table 1: Only VM (UNC (RefCOCO) testA)"
    other = table.loc[("lstm_cnn", "val")]
    assert other.loc["paper (%)"].isna().all()
    assert other[("source", "")] == "—"
    assert list(table.index) == list(ours.index)


def test_beside_paper_by_split():
    ours = pd.DataFrame({"val": [0.5, 0.4], "testA": [0.55, 0.5], "testB": [0.45, math.nan]},
                        index=pd.Index(["dmn", "dmn_no_filters"], name="variant"))
    table = beside_paper(ours, {"dmn": PaperRef("DMN", "Table 2", "DMN", dataset=UNC)},
                         by="split", metric="overall_iou")
    assert table.loc["dmn", "paper (%)"].tolist() == [49.78, 54.83, 45.13]
    assert table.loc["dmn", ("source", "")] == "DMN Table 2: DMN (UNC (RefCOCO))"
    assert table.loc["dmn_no_filters", "paper (%)"].isna().all()


def test_beside_paper_refuses_mixed_metrics_and_bad_keys(records):
    ours = results_table(records, index=("model", "split"), columns=(), metric=["overall_iou"])
    with pytest.raises(ValueError, match="reports none"):  # MCN has mean IoU, not overall
        beside_paper(ours, {("only_vm", "val"): ("MCN", "Table 2", "+ASNLS", UNC)})
    with pytest.raises(ValueError, match="not a row"):
        beside_paper(ours, {("only_vm", "train"): ("DMN", "Table 1", "Only VM")})
    with pytest.raises(ValueError, match="give the PaperRef a dataset"):
        beside_paper(ours, {("only_vm", "val"): ("DMN", "Table 2", "DMN")})
    with pytest.raises(ValueError, match="percentage metrics"):
        beside_paper(ours.rename(columns={"overall_iou": "params"}), {})


# ---------------------------------------------------------------------------------------------
# Written files
# ---------------------------------------------------------------------------------------------


def test_write_table_markdown_and_csv(records, tmp_path):
    ours = results_table(records, index=("model", "split"), columns=(), metric=["overall_iou"])
    table = beside_paper(ours, {("only_vm", "testA"): ("DMN", "Table 1", "Only VM")})
    md, csv = write_table(table, "demo", "A demo", ["overall IoU at threshold 0.5"], tmp_path)
    assert (md, csv) == (tmp_path / "demo.md", tmp_path / "demo.csv")
    text = md.read_text()
    assert text.startswith("# A demo\n\n- overall IoU at threshold 0.5\n\n| model ")
    assert "ours (%) · overall_iou" in text and re.search(r"\|\s+30\.92 \|", text)
    assert "35.00" in text and "—" in text
    lines = csv.read_text().splitlines()
    assert lines[0] == "model,split,ours (%) · overall_iou,paper (%) · overall_iou,source"
    assert "only_vm,testA,35.0000,30.9200,DMN Table 1: Only VM (UNC (RefCOCO) testA)" in lines
    with pytest.raises(ValueError, match="report name"):
        write_table(table, "../escape", "x", out_dir=tmp_path)


def test_save_figure_writes_the_same_png_twice(tmp_path):
    data = pd.DataFrame({"split": ["val", "testA"], "IoU": [30.0, 40.0], "model": ["a", "a"]})
    first = save_figure(reports.bar_plot(data, "split", "IoU", "model"), "bars", tmp_path)
    assert first == tmp_path / "figures" / "bars.png"
    png = first.read_bytes()
    assert png.startswith(b"\x89PNG") and b"matplotlib" not in png
    save_figure(reports.bar_plot(data, "split", "IoU", "model"), "bars", tmp_path)
    assert first.read_bytes() == png
    grid = results_table(pd.DataFrame([record("only_vm", "val", 0.3)]))
    assert save_figure(reports.heatmap(grid, title="IoU"), "grid", tmp_path).is_file()


def test_build_reports_is_a_pure_function_of_the_records(records, tmp_path):
    first = build_reports(records, tmp_path / "a")
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in first)
    assert names == ["README.md", "baselines.csv", "baselines.md", "figures/baselines.png",
                     "runs_shapes-quick.csv", "runs_shapes-quick.md"]
    written = {p: p.read_bytes() for p in first}
    shutil.rmtree(tmp_path / "a")
    again = build_reports(records.sample(frac=1.0, random_state=1), tmp_path / "a")
    assert {p: p.read_bytes() for p in again} == written
    text = (tmp_path / "a" / "baselines.md").read_text()
    assert "DMN Table 1: Only VM (UNC (RefCOCO) testA)" in text
    assert "notebooks/02_dmn.ipynb" in text and "probability > 0.5" in text
    assert "(baselines.md)" in (tmp_path / "a" / "README.md").read_text()


def test_cmsa_tables_from_records_put_the_styles_beside_unc_and_unc_plus():
    pr = {f"Pr@{t}": 0.1 for t in (0.6, 0.7, 0.8, 0.9)}  # Table 3's columns
    rows = [record("cmsa", s, v, variant="base", style=style, **pr)
            for style, base in (("refshape", 0.3), ("refshape+", 0.2))
            for s, v in (("val", base), ("testA", base + 0.05), ("testB", base - 0.05))]
    rows += [record("cmsa", "val", 0.1, variant="cmsa_w", **pr),
             record("dmn", "val", 0.4, variant="base")]
    tables = reports.cmsa_tables(pd.DataFrame(rows))
    assert set(tables) == {"table2", "table3", "versus", "styles"}  # CMSA-W is in both tables
    assert list(tables["table2"].index) == ["Cross-modal self-attention"]
    styles = tables["styles"]
    assert styles.loc["refshape+", ("ours (%)", "testA")] == pytest.approx(25.0)
    assert styles.loc["refshape", ("paper (%)", "val")] == 58.32  # CMSA Table 1, Ours, UNC
    assert styles.loc["refshape+", ("paper (%)", "val")] == 43.76  # and UNC+
    assert tables["versus"].loc["DMN", "val"] == pytest.approx(40.0)
    assert tables["table3"].loc["CMSA-W", ("ours (%)", "overall_iou")] == pytest.approx(10.0)


def test_mcn_tables_from_records_follow_the_paper_rows_and_metrics():
    at = {f"{m}@0.35": 0.2 for m in ("mean_iou", "overall_iou", "IE")}
    at |= {f"Pr@{t}@0.35": 0.1 for t in (0.5, 0.6, 0.7, 0.8, 0.9)}
    rows = [record("mcn", "val", 0.1, variant=v, **{**at, "Acc@0.5": acc})
            for v, acc in (("cem", 0.3), ("cem+asnls", 0.3), ("base", 0.4),
                           ("cem_eq9", 0.35), ("single_rec_13", 0.25))]
    rows += [record("mcn", "val", 0.0, variant="single_res_52", **{"mean_iou@0.35": 0.15}),
             record("dmn", "val", 0.5, variant="base")]
    tables = reports.mcn_tables(pd.DataFrame(rows))
    assert set(tables) == {"table1", "table2", "table3", "versus"}
    table_1 = tables["table1"]
    assert list(table_1.index) == ["w.o. post-processing", "ASNLS (ours)"]
    assert table_1.loc["ASNLS (ours)", ("paper (%)", "mean_iou@0.35")] == 62.44
    assert table_1.loc["ASNLS (ours)", ("paper (%)", "IE@0.35")] == 6.65
    table_2 = tables["table2"]
    assert table_2.loc["+CEM (eq. 9 as printed)", ("source", "")] == reports.MISSING  # no row
    assert table_2.loc["MCN (Base)", ("ours (%)", "Acc@0.5")] == pytest.approx(40.0)
    table_3 = tables["table3"]
    assert math.isnan(table_3.loc["Single_REC (scale=13^2)", ("ours (%)", "mean_iou@0.35")])
    assert table_3.loc["Single_RES (scale=52^2)", ("paper (%)", "mean_iou@0.35")] == 57.91
    assert list(tables["versus"].index) == ["DMN", "MCN", "MCN+ASNLS"]



def test_m3att_tables_have_no_ablation_paper_column_and_the_survey_row():
    probes = {"Pr@0.7": 0.1, "Pr@0.9": 0.0, "word_recovery": 0.9, "word_recovery_input": 1.0,
              "bag_recovery": 0.6}
    rows = [record("m3att", s, v, variant="lfr", **probes)
            for s, v in (("val", 0.4), ("testA", 0.5))]
    rows += [record("m3att", "val", 0.3, variant="vanilla", **probes),
             record("m3att", "val", 0.3, variant="lfr-live", **probes),
             record("m3att", "val", 0.45, variant="lfr-seed1", **probes),
             record("dmn", "val", 0.5, variant="base")]
    tables = reports.m3att_tables(pd.DataFrame(rows))
    assert set(tables) == {"ablation", "probe", "seeds", "main", "versus"}
    seeds = tables["seeds"]
    assert list(seeds.index) == ["+LFR (full model)"]  # the rows trained with a second seed
    assert seeds.loc["+LFR (full model)", ("overall_iou", "seed 1")] == pytest.approx(45.0)
    assert seeds.loc["+LFR (full model)", ("overall_iou", "seed 0")] == pytest.approx(40.0)
    ablation = tables["ablation"]
    assert list(ablation.index) == ["Vanilla decoder (cross-attention)", "+LFR (full model)"]
    assert ablation["paper (%)"].isna().all().all()
    assert (ablation[("source", "")] == reports.MISSING).all()
    assert tables["probe"].loc["+LFR (full model)", "word_recovery"] == pytest.approx(90.0)
    main = tables["main"]
    assert main.loc["M3Att (ours: +LFR)", ("ours (%)", "testA")] == pytest.approx(50.0)
    assert main.loc["M3Att (ours: +LFR)", ("paper (%)", "val")] == 73.60  # survey, RefCOCO
    assert main.loc["M3Att (ours: +LFR)", ("paper (%)", "testA")] == 76.23
    assert list(tables["versus"].index) == ["DMN", "M3Att"]
    assert reports.m3att_tables(pd.DataFrame(rows).iloc[:0]) == {}  # no records: no table

def test_build_reports_skips_reports_without_records(tmp_path):
    written = build_reports(pd.DataFrame(), tmp_path)
    assert written == [tmp_path / "README.md"]
    assert "No report yet" in written[0].read_text()
    # a record no paper's table reads still appears in the catalogue, and only there
    written = build_reports(pd.DataFrame([record("cmsa", "val", 0.5)]), tmp_path)
    assert [p.name for p in written] == ["runs_shapes-quick.md", "runs_shapes-quick.csv",
                                         "README.md"]
    assert not (tmp_path / "baselines.md").exists()
    with pytest.raises(ValueError, match="unknown report"):
        build_reports(pd.DataFrame(), tmp_path, names=["nope"])


def test_register_report_refuses_a_second_builder_of_one_name():
    with pytest.raises(ValueError, match="already registered"):
        reports.register_report("baselines")(reports.baselines_report)


def test_reports_from_record_files(records, tmp_path):
    """JSON files as the engine writes them, read back by ``records.load_run_records``."""
    runs = tmp_path / "reports" / "runs"
    runs.mkdir(parents=True)
    metrics = ("overall_iou", "mean_iou", "Pr@0.5", "n")
    for i, row in enumerate(records.to_dict("records")):
        data = {k: v for k, v in row.items() if k not in metrics}
        data["metrics"] = {k: row[k] for k in metrics}
        data["style"] = data["style"] or ""
        (runs / f"run{i}.json").write_text(json.dumps(data))
    loaded = load_run_records(runs)
    written = build_reports(loaded, tmp_path / "reports")
    text = (tmp_path / "reports" / "baselines.md").read_text()
    assert "run0.json" in text and str(tmp_path) not in text  # file names, no machine paths
    direct = (build_reports(records, tmp_path / "direct")[0]).read_text()
    table = lambda md: md[md.index("| model"):]  # the notes differ (file names), not the table
    assert table(direct) == table(text) and len(written) == 6


def test_dmn_report_sets_table_1_beside_the_paper(tmp_path):
    precisions = {f"Pr@0.{k}": 0.1 for k in range(6, 10)}
    rows = [record("only_vm", s, 0.02, variant="base", **precisions) for s in ("val", "testA")]
    rows += [record("dmn", s, v, variant=variant, **precisions)
             for variant, v in (("base", 0.5), ("no_skip", 0.45), ("no_filters", 0.2),
                                ("base-lowres", 0.35), ("lstm-lowres", 0.3))
             for s in ("val", "testA")]
    written = build_reports(pd.DataFrame(rows), tmp_path, names=["dmn"])
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["README.md", "dmn_lowres_shapes-refshape-quick.csv",
                     "dmn_lowres_shapes-refshape-quick.md", "dmn_table1_shapes-refshape-quick.csv",
                     "dmn_table1_shapes-refshape-quick.md",
                     "figures/dmn_table1_shapes-refshape-quick.png"]
    table = pd.read_csv(tmp_path / "dmn_table1_shapes-refshape-quick.csv")
    assert table["row"].tolist() == ["Only VM"] * 2 + ["No skip connections in UM"] * 2 + [
        "No dynamic filters"] * 2 + ["DMN"] * 2  # the paper's row order
    dmn_testa = table[(table["row"] == "DMN") & (table["split"] == "testA")].iloc[0]
    assert dmn_testa["ours (%) · overall_iou"] == 50.0
    assert dmn_testa["paper (%) · overall_iou"] == 54.83
    assert math.isnan(table[(table["row"] == "DMN") & (table["split"] == "val")]
                      ["paper (%) · overall_iou"].iloc[0])
    low = (tmp_path / "dmn_lowres_shapes-refshape-quick.md").read_text()
    assert "base-lowres" in low and "lstm-lowres" in low and "no_skip" not in low


def test_ris_tables_show_both_arms_per_seed_in_percent_and_dic_as_a_count():
    scores = {"count_acc": 0.5, "abs_dic": 0.75, "sbd": 0.4, "best_overlap": 0.3, "ap@0.5": 0.2}
    rows = [record("ris", "val", 0.6, variant=v, **scores)
            for v in ("all", "all-curriculum", "all-seed1", "all-curriculum-seed1",
                      "all-stage1", "plural-curriculum")]
    rows.append(record("ris", "testA", 0.7, variant="all-curriculum", **scores))
    tables = reports.ris_tables(pd.DataFrame(rows))
    assert set(tables) == {"curriculum", "splits", "plural"}
    curriculum = tables["curriculum"]
    assert list(curriculum.index) == [
        ("n + 2 steps from the start", "seed 0"), ("n + 2 steps from the start", "seed 1"),
        ("curriculum: 2, then n + 2", "seed 0"), ("curriculum: 2, then n + 2", "seed 1")]
    assert curriculum["count_acc"].eq(50.0).all() and curriculum["abs_dic"].eq(0.75).all()
    assert list(curriculum.columns)[:2] == ["count_acc", "abs_dic"]
    splits = tables["splits"]
    assert splits.loc["curriculum: 2, then n + 2", ("overall_iou", "testA")] == pytest.approx(70)
    assert len(tables["plural"]) == 2  # stage 1 is no row of any table
    assert reports.ris_tables(pd.DataFrame(rows).iloc[:0]) == {}


def test_budget_report_sets_each_budget_beside_twice_as_long(tmp_path):
    train = {"max_steps": 1000}
    rows = [record("lstm_cnn", "val", 0.45, variant="base", config={"train": train}),
            record("lstm_cnn", "val", 0.48, variant="base-2x",
                   config={"train": {"max_steps": 2000}}),
            record("mcn", "val", 0.3, variant="cem+asnls", config={"train": train}),
            record("mcn", "val", 0.5, variant="cem-2x+asnls", config={"train": train}),
            record("dmn", "val", 0.5, variant="base", config={"train": train})]  # no twin
    table = reports.budget_table(pd.DataFrame(rows))
    assert list(table.index) == ["LSTM-CNN", "MCN"]
    assert table.loc["LSTM-CNN", "share of x2"] == pytest.approx(0.45 / 0.48)
    assert table.loc["LSTM-CNN", "budget justified"] and not table.loc["MCN", "budget justified"]
    assert table.loc["LSTM-CNN", "steps x2"] == 2000
    assert [p.name for p in reports.budget_report(pd.DataFrame(rows), tmp_path)] == [
        "budget_shapes-quick.md", "budget_shapes-quick.csv"]


# ---------------------------------------------------------------------------------------------
# Scale: expressions evaluated, training steps, short runs; every record in some table
# ---------------------------------------------------------------------------------------------


def trained(model: str, split: str, steps: int, n: int, *, variant: str = "base",
            dataset: str = "shapes", style: str = "refshape", init_from: str | None = None,
            **extra) -> dict:
    """A record of a run trained ``steps`` steps (after the stage ``init_from``) and evaluated
    on ``n`` expressions."""
    config = {"train": {"max_steps": steps}, "eval_samples": n, "eval_thresholds": [0.5],
              "init_from": init_from}
    return record(model, split, 0.3, variant=variant, dataset=dataset, style=style,
                  config=config, n=n, **{"Pr@0.7": 0.1, "Pr@0.9": 0.0, **extra})


def test_recipe_steps_of_stages_and_runs_twice_as_long():
    from refseg_lib import experiments
    from refseg_lib.experiments import recipe_steps

    low, high = experiments.DMN_STAGE_STEPS["quick"]
    assert recipe_steps("dmn", "base") == low + high  # both stages
    assert recipe_steps("dmn", "base-lowres") == low  # the first stage alone
    assert recipe_steps("dmn", "base-lowres-2x") == 2 * low
    assert recipe_steps("dmn", "no_skip-seed1") == low + high
    assert recipe_steps("ris", "all-stage1") == experiments.RIS_CURRICULUM_STEPS["quick"]
    assert recipe_steps("ris", "all-curriculum") == experiments.RIS_STEPS["quick"]
    assert recipe_steps("ris", "all-curriculum-2x") == 2 * experiments.RIS_STEPS["quick"]
    assert recipe_steps("mcn", "cem-2x+asnls") == 2 * experiments.MCN_STEPS["quick"]
    assert recipe_steps("lstm_cnn", "sru") == experiments.PROFILES["quick"].train.max_steps
    assert recipe_steps("mcn", "cem", "paper") == 45 * 3447  # PAPER_TRAIN's epochs
    assert recipe_steps("cmsa", "base", "paper") == experiments.PROFILES["paper"].train.max_steps
    assert recipe_steps("ris", "all-curriculum", "paper") == 20_000 + 100_000
    assert recipe_steps("reference", "resolver") == 0


def test_a_short_run_is_shown_with_its_scale_and_marked_short(tmp_path):
    """A 5-step RefCOCO run evaluated on 30 expressions, beside a full-budget ShapeRef run: its
    rows carry n and steps and are marked short, in the table and in a note of its own."""
    rows = [trained("only_vm", s, 5, 30, dataset="refcoco", style="unc")
            for s in ("val", "testA", "testB")]
    rows += [trained("only_vm", s, 1200, 500) for s in ("val", "testA")]
    rows += [trained("mcn", s, 5, 30, dataset="refcoco", style="unc", **{"Acc@0.5": 0.2})
             for s in ("val", "testA")]
    build_reports(pd.DataFrame(rows), tmp_path, names=["baselines", "mcn", "runs"])
    table = pd.read_csv(tmp_path / "baselines.csv").set_index(["benchmark", "split"])
    short = table.loc[("refcoco/unc", "testA")]
    assert short["paper (%) · overall_iou"] == 30.92  # beside DMN's UNC testA ...
    assert (short["scale · n"], short["scale · steps"]) == (30, 5)  # ... with its scale
    assert short["scale · short"] == "yes: 5 of 1200 steps"
    full = table.loc[("shapes/refshape", "testA")]
    assert (full["scale · n"], full["scale · steps"], full["scale · short"]) == (500, 1200, "no")
    text = (tmp_path / "baselines.md").read_text()
    assert ("**Short runs**, below the quick profile's budget: only_vm/base on refcoco/unc "
            "trained 5 of 1200 steps, evaluated on 30 expressions per split") in text
    assert "only_vm/base on shapes/refshape trained" not in text
    assert "each the run's budget" not in text  # a short run is never called the budget

    mcn = (tmp_path / "mcn_table2_refcoco-unc-quick.md").read_text()
    assert "Ours: RefCOCO (UNC split)" in mcn and "ShapeRef" not in mcn
    assert "mcn/base on refcoco/unc trained 5 of 900 steps" in mcn
    assert "every MCN run trains" not in mcn
    row = pd.read_csv(tmp_path / "mcn_table2_refcoco-unc-quick.csv").iloc[0]
    assert row["paper (%) · Acc@0.5"] == 77.45  # MCN Table 2, UNC val
    assert (row["scale · n"], row["scale · steps"]) == (30, 5)
    assert row["scale · short"].startswith("yes")
    catalogue = pd.read_csv(tmp_path / "runs_refcoco-quick.csv")
    testa = catalogue[(catalogue["model"] == "mcn") & (catalogue["split"] == "testA")]
    assert len(testa) == 1 and testa["short"].iloc[0] == "yes: 5 of 900 steps"  # no val only


def test_full_budget_runs_are_summed_over_stages_and_not_short():
    rows = [trained("dmn", "val", 900, 500, variant="base-lowres"),
            trained("dmn", "val", 150, 500, variant="base",
                    init_from="dmn__base-lowres__shapes-refshape__quick.pt"),
            record("reference", "val", 0.2, variant="largest_object")]
    scale = reports.scale_table(pd.DataFrame(rows), ("variant",))
    assert scale.loc["base", "steps"] == 1050 and not scale.loc["base", "short"]
    assert scale.loc["base-lowres", "recipe_steps"] == 900 and not scale["short"].any()
    assert scale.loc["largest_object", "steps"] == 0  # untrained: never short
    notes = reports.scale_notes(pd.DataFrame(rows))
    assert notes == ["Scale: 500 expressions evaluated per split (n), except "
                     "reference/largest_object (300); training steps per run, all stages: dmn "
                     "1050 (900: base-lowres); each the run's budget in the quick profile's "
                     "recipe (a first stage's: its stage's; a -2x run's: twice the budget); the "
                     "untrained reference predictors train none."]
    # without its first stage's record the whole budget is unknown, not taken as short
    alone = reports.with_scale(pd.DataFrame(rows[1:2]))
    assert math.isnan(alone["steps"].iloc[0]) and not alone["short"].iloc[0]


def test_a_refer_record_is_set_beside_its_own_benchmark_only(tmp_path):
    """(dataset, split scheme) -> the papers' benchmark: RefCOCOg's Google split is never set
    beside a UMD number, nor the reverse; records without a scheme read the default one."""
    from refseg_lib.paper_numbers import GREF_GOOGLE, RECORD_DATASETS, REFERIT

    assert reports.paper_dataset("refcocog", "google") == GREF_GOOGLE
    assert reports.paper_dataset("refcocog", "umd") == GREF_UMD
    assert reports.paper_dataset("refcocog", "") == GREF_UMD  # REFER's default scheme
    assert reports.paper_dataset("refclef", "berkeley") == REFERIT
    assert reports.paper_dataset("refclef", "") is None  # the default is the UNC split
    assert reports.paper_dataset("refcoco", "google") is None
    assert reports.paper_dataset("shapes", "refshape") == UNC
    assert set(RECORD_DATASETS.values()) == {UNC, UNC_PLUS, GREF_UMD, GREF_GOOGLE, REFERIT}
    assert reports.paper_row("MCN", "Table 2", "+CEM", "refcocog", "google") is None
    assert reports.paper_row("MCN", "Table 2", "+CEM", "refcocog", "umd").dataset == GREF_UMD

    rows = [trained("lstm_cnn", "val", 1200, 500, dataset="refcocog", style=s)
            for s in ("google", "umd")]
    rows += [trained("lstm_cnn", "test", 1200, 500, dataset="refclef", style="berkeley"),
             trained("only_vm", "testA", 1200, 500, dataset="refcoco", style="")]
    rows += [trained("mcn", "val", 900, 500, dataset="refcocog", style=s, **{"Acc@0.5": 0.5})
             for s in ("google", "umd")]
    build_reports(pd.DataFrame(rows), tmp_path)
    paper = pd.read_csv(tmp_path / "baselines.csv").set_index(["model", "benchmark", "split"])
    paper = paper["paper (%) · overall_iou"]
    assert paper[("lstm_cnn", "refcocog/google", "val")] == 28.14  # CMSA Table 1, G-Ref Google
    assert math.isnan(paper[("lstm_cnn", "refcocog/umd", "val")])
    assert paper[("lstm_cnn", "refclef/berkeley", "test")] == 48.03  # ReferIt
    assert paper[("only_vm", "refcoco", "testA")] == 30.92  # no scheme: RefCOCO's UNC split
    umd = pd.read_csv(tmp_path / "mcn_table2_refcocog-umd-quick.csv").iloc[0]
    google = pd.read_csv(tmp_path / "mcn_table2_refcocog-google-quick.csv").iloc[0]
    assert "G-Ref (RefCOCOg, UMD split)" in umd["source"]
    assert math.isnan(google["paper (%) · Acc@0.5"]) and google["source"] == reports.MISSING
    assert ("Ours: RefCOCOg (Google split), percent; a paper's number beside it is of the same "
            "benchmark, G-Ref (RefCOCOg, Google split) val") in (
        tmp_path / "mcn_table2_refcocog-google-quick.md").read_text()


def test_every_committed_record_appears_in_some_table(tmp_path):
    """Every record under reports/runs/ (each run and split) is a row of some written CSV, the
    MCN records of testA and testB too."""
    from pathlib import Path

    records = load_run_records(Path(__file__).resolve().parents[1] / "reports" / "runs")
    build_reports(records, tmp_path)
    shown = set()
    for csv in tmp_path.glob("*.csv"):
        table = pd.read_csv(csv, dtype=str)
        if {"model", "variant", "split"} <= set(table.columns):
            shown |= set(zip(table["model"], table["variant"], table["split"], strict=True))
    wanted = set(zip(records["model"], records["variant"], records["split"], strict=True))
    assert wanted and wanted <= shown, sorted(wanted - shown)[:10]
    assert {("mcn", "base", "testA"), ("mcn", "garan+asnls", "testB")} <= shown
    catalogue = pd.read_csv(tmp_path / "runs_shapes-quick.csv")
    assert len(catalogue) == len(reports.latest_records(records))
    assert {"n", "steps", "recipe steps", "short"} <= set(catalogue.columns)
