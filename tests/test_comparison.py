"""Tests of notebook 09's library: the leaderboard (refseg_lib.reports.comparison), the claims
ledger (refseg_lib.reports.claims), the demo (refseg_lib.demo), and what the records keep for
them."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from refseg_lib.experiments import LEADERBOARD_EXAMPLES, run_experiment, run_mcn
from refseg_lib.metrics import breakdown_by_tag, tag_record_metrics
from refseg_lib.records import pack_mask, unpack_mask
from refseg_lib.reports import MISSING, build_reports, claims, comparison
from refseg_lib.reports.claims import (
    CLAIMS,
    VERDICTS,
    Claim,
    Side,
    claims_ledger,
    close_calls,
    judge,
    seeded,
)


def record(model: str, variant: str, split: str = "val", style: str = "refshape",
           overall: float = 0.5, **extra) -> dict:
    """A leaderboard-style record as ``load_run_records`` flattens it."""
    config = {"train": {"max_steps": extra.pop("steps", 100)}, "eval_thresholds": [0.5],
              "init_from": extra.pop("init_from", None)}
    return {"model": model, "variant": variant, "dataset": "shapes", "style": style,
            "split": split, "profile": "quick", "config": config, "overall_iou": overall,
            "mean_iou": overall - 0.1, "Pr@0.5": overall / 2, "Pr@0.7": 0.1, "Pr@0.9": 0.0,
            "n": 500, "train_time_s": 10.0, "eval_time_s": 1.0, "samples_per_s": 100.0,
            "params": 2_000_000, "hardware": {"device": "cpu"}, "git_revision": "abc1234",
            "created": "2026-01-01", "source": "notebooks/09_comparison.ipynb",
            "path": f"/x/{model}__{variant}__{style}__{split}.json", **extra}


@pytest.fixture
def leaderboard_records() -> pd.DataFrame:
    tags = {"overall_iou[category only]": 0.8, "overall_iou[location]": 0.3,
            "overall_iou[size]": 0.4, "n[category only]": 20, "n[location]": 9, "n[size]": 10}
    rows = []
    for split in ("val", "testA", "testB"):
        rows.append(record("dmn", "base-lowres", split, steps=86))
        rows.append(record("dmn", "base", split, steps=14, overall=0.6,
                           init_from="dmn__base-lowres__shapes-refshape__quick.pt", **tags))
        rows.append(record("only_vm", "base", split, overall=0.05, **tags))
    rows.append(record("dmn", "base", "val", "refshape+", overall=0.4, steps=14,
                       init_from="dmn__base-lowres__shapes-refshape+__quick.pt", **tags))
    return pd.DataFrame(rows)


def test_leaderboard_sums_stages_and_leaves_missing_systems_out(leaderboard_records):
    tables = comparison.leaderboard_tables(leaderboard_records)
    full = tables["full"]
    assert set(full.index.get_level_values("system")) == {"Only VM", "DMN"}  # others missing
    dmn = full.loc[("DMN", "refshape", "val")]
    assert dmn[("cost", "steps")] == 100  # 86 low-resolution steps + 14 with the UM
    assert dmn[("cost", "train (s)")] == 20.0 and dmn[("cost", "inference (ms)")] == 2.0
    assert dmn[("ours (%)", "overall_iou")] == pytest.approx(60.0)
    assert dmn[("paper (%)", "overall_iou")] == 49.78  # DMN Table 2, UNC val
    assert "DMN Table 2" in dmn[("source", "")]
    # refshape+ lowres stage has no record: its budget is unknown, not guessed
    assert pd.isna(full.loc[("DMN", "refshape+", "val"), ("cost", "steps")])
    assert list(tables["summary"].index) == ["Only VM", "DMN"]  # LEADERBOARD's order
    phenomena = tables["phenomena"]
    assert phenomena.loc["DMN", ("refshape", "category only")] == pytest.approx(80.0)
    assert phenomena.loc["Only VM", ("refshape", "size")] == pytest.approx(40.0)
    assert phenomena[("refshape", "location")].isna().all()  # 9 expressions: too few
    assert "ris" not in tables
    assert comparison.leaderboard_tables(leaderboard_records.iloc[0:0]) == {}


def test_leaderboard_report_and_readme_section(leaderboard_records, tmp_path):
    written = build_reports(leaderboard_records, tmp_path, names=["leaderboard"])
    names = {p.name for p in written}
    assert {"leaderboard_shapes-quick.md", "leaderboard_summary_shapes-quick.md",
            "leaderboard_phenomena_shapes-quick.png"} <= names
    again = build_reports(leaderboard_records, tmp_path / "b", names=["leaderboard"])
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]
    section = comparison.readme_section(leaderboard_records)
    assert "| DMN" in section and "its own budget" in section and "80 px" in section
    assert "Claims ledger" in section and "nan" not in section
    summary = comparison.leaderboard_tables(leaderboard_records)["summary"]
    assert summary.loc["DMN", ("steps", "refshape")] == 100  # both stages


def test_claims_cover_five_papers_and_quote_their_figures():
    assert len(CLAIMS) >= 20
    assert {c.paper.split(" / ")[0] for c in CLAIMS} >= {"DMN", "CMSA", "MCN", "M3Att", "RIS"}
    empty = pd.DataFrame(columns=["model", "variant", "style", "split", "dataset", "profile"])
    for claim in CLAIMS:  # every paper row a claim names exists (LookupError otherwise)
        row = judge(claim, empty)
        assert row["verdict"] == "not testable here" and row["why"]


def _claim(**kwargs) -> Claim:
    return Claim("DMN", "Table 1", "a beats b", better=Side("a", "dmn", "a"),
                 worse=(Side("b", "dmn", "b"),), **kwargs)


@pytest.mark.parametrize("a, b, verdict, why", [
    (0.60, 0.50, "reproduced", "ahead by at least 10.00"),
    (0.505, 0.50, "reproduced", "a second seed is due"),
    (0.50, 0.50, "not reproduced", "tied"), (0.40, 0.50, "not reproduced", "reversed")])
def test_verdicts_follow_the_margin(a, b, verdict, why):
    runs = pd.DataFrame([record("dmn", "a", overall=a), record("dmn", "b", overall=b)])
    row = judge(_claim(), runs)
    assert row["verdict"] == verdict and why in row["why"]
    assert row["ours"] == f"{a * 100:.2f} vs {b * 100:.2f}"
    assert "dmn__a__refshape__val.json" in row["records"]


def test_seeds_that_disagree_are_inconclusive_and_lower_can_be_better():
    runs = pd.DataFrame([record("dmn", "a", overall=0.6), record("dmn", "b", overall=0.5),
                         record("dmn", "a-seed1", overall=0.5),
                         record("dmn", "b-seed1", overall=0.55)])
    row = judge(_claim(), runs)
    assert row["verdict"] == "inconclusive" and "(seed 1)" in row["ours"]
    agree = runs.assign(overall_iou=[0.6, 0.5, 0.58, 0.55])
    assert judge(_claim(), agree)["verdict"] == "reproduced"
    against = runs.assign(overall_iou=[0.4, 0.5, 0.45, 0.55])
    assert judge(_claim(), against)["verdict"] == "not reproduced"
    assert judge(_claim(lower_is_better=True), runs.iloc[[0, 1]])["verdict"] == "not reproduced"
    lower = pd.DataFrame([record("dmn", "a", overall=0.4), record("dmn", "b", overall=0.5)])
    assert judge(_claim(lower_is_better=True), lower)["verdict"] == "reproduced"
    behind = pd.DataFrame([record("dmn", "a", overall=0.5), record("dmn", "b", overall=0.6)])
    similar = judge(_claim(kind="similar"), behind)
    assert similar["verdict"] == "not reproduced" and "behind by 10.00" in similar["why"]
    close = behind.assign(overall_iou=[0.595, 0.6])
    assert judge(_claim(kind="similar"), close)["verdict"] == "reproduced"
    assert judge(_claim(kind="similar", margin=12.0), behind)["verdict"] == "reproduced"


def test_ledger_report_is_written_only_with_records(tmp_path, leaderboard_records):
    assert claims.claims_report(leaderboard_records.iloc[0:0], tmp_path) == []
    paths = claims.claims_report(leaderboard_records, tmp_path)
    text = (tmp_path / "CLAIMS.md").read_text()
    assert [p.name for p in paths] == ["CLAIMS.md", "CLAIMS.csv"]
    assert f"{len(CLAIMS)} claims" in text and "reproduced" in text
    ledger = claims_ledger(leaderboard_records)
    assert set(ledger["verdict"]) <= set(VERDICTS) and (ledger["records"] != "").all()
    # one set of numbers: the leaderboard's DMN and Only VM are Table 1's rows too
    dmn_vs_vm = ledger[ledger["claim"].str.startswith("the expression matters")].iloc[0]
    assert dmn_vs_vm["ours"] == "60.00 vs 5.00" and dmn_vs_vm["verdict"] == "reproduced"
    filters = ledger[ledger["claim"].str.startswith("dynamic filters help")].iloc[0]
    assert filters["ours"] == MISSING and filters["verdict"] == "not testable here"


def test_close_calls_name_both_sides_until_a_second_seed_is_recorded():
    close = pd.DataFrame([record("dmn", "a", overall=0.505), record("dmn", "b", overall=0.50)])
    claim = (_claim(),)
    assert close_calls(close, claim) == {("dmn", "a", "refshape"), ("dmn", "b", "refshape")}
    far = close.assign(overall_iou=[0.6, 0.5])
    assert close_calls(far, claim) == set()
    reversed_close = close.assign(overall_iou=[0.495, 0.5])
    assert close_calls(reversed_close, claim) == {("dmn", "a", "refshape"),
                                                  ("dmn", "b", "refshape")}
    seeded_too = pd.concat([close, pd.DataFrame([record("dmn", "a-seed1", overall=0.51),
                                                 record("dmn", "b-seed1", overall=0.5)])])
    assert close_calls(seeded_too, claim) == set()
    assert seeded("cem+asnls", "-seed1") == "cem-seed1+asnls" and seeded("b", "-seed1") == "b-seed1"


# ---------------------------------------------------------------------------------------------
# What the records keep: masks of a few samples, overall IoU per phenomenon
# ---------------------------------------------------------------------------------------------


def test_pack_mask_round_trips_and_checks_its_input():
    mask = torch.rand(5, 7) > 0.5
    text = pack_mask(mask)
    assert text.startswith("5x7:") and torch.equal(unpack_mask(text), mask)
    with pytest.raises(ValueError, match="one"):
        pack_mask(torch.zeros(2, 5, 7, dtype=torch.bool))


def test_category_only_row_and_record_metrics():
    inter, union = torch.tensor([1, 3, 0]), torch.tensor([2, 4, 5])
    tags = [("category",), ("category", "location"), ("category",)]
    table = breakdown_by_tag(inter, union, tags, category_only=True)
    assert table.loc["category only", "n"] == 2
    assert table.loc["category only", "overall_iou"] == pytest.approx(1 / 7)
    assert "category only" not in breakdown_by_tag(inter, union, tags).index
    found = tag_record_metrics(table)
    assert found["overall_iou[location]"] == pytest.approx(0.75) and found["n[location]"] == 1
    untagged = breakdown_by_tag(inter, union, [(), (), ()], category_only=True)
    assert tag_record_metrics(untagged) == {}


def test_records_keep_examples_tags_and_the_learning_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    experiment = run_experiment("only_vm", train_overrides={"max_steps": 4}, eval_splits=("val",),
                                eval_samples=70, examples=LEADERBOARD_EXAMPLES, progress=False)
    saved = pd.read_json(experiment.records[0], typ="series")
    assert len(saved["examples"]) == 2  # samples 0 and 60 of the 70 evaluated
    assert unpack_mask(next(iter(saved["examples"].values()))).shape == (80, 80)
    assert "overall_iou[category only]" in saved["metrics"]
    assert [p["step"] for p in saved["curve"]] == [1, 2, 3, 4]  # ceil(4 / 10) steps apart
    assert all(0 <= p["overall_iou"] <= 1 for p in saved["curve"])


# ---------------------------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------------------------


def test_demo_names_unknown_words_and_refuses_empty_expressions(tmp_path, monkeypatch):
    from refseg_lib.data import Vocabulary
    from refseg_lib.demo import TrainedModel, load_trained, scene, segment, show
    from refseg_lib.models import build_model

    vocabulary = Vocabulary(["the", "red", "star"])
    net = build_model("lstm_cnn", profile="quick", vocab_size=len(vocabulary))
    trained = TrainedModel("tiny", net, vocabulary)
    sample = scene(2)
    assert sample.sample_id == scene(2).sample_id and sample.image.shape == (3, 80, 80)
    result = segment(trained, sample.image, "The crimson star, left of the red ring")
    assert result.unknown == ["crimson", "left", "of", "ring"]
    assert "'crimson'" in result.message() and "3 words" in result.message()
    assert result.mask.shape == (80, 80) and result.mask.dtype == torch.bool
    assert "all 3 words" in segment(trained, sample.image, "the red star").message()
    with pytest.raises(ValueError, match="no words"):
        segment(trained, sample.image, " ?! ")
    assert len(show(sample.image, result, truth=sample.mask).axes) == 4
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="fetch the saved results .* or train it"):
        load_trained("dmn", "base")


def test_examples_are_predicted_under_each_evaluation_setting(tmp_path, monkeypatch):
    from refseg_lib import experiments

    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    seen = []
    predicted = experiments.predicted_examples

    def spy(net, *args):
        seen.append(net.postprocess)
        return predicted(net, *args)

    monkeypatch.setattr(experiments, "predicted_examples", spy)
    run_mcn("cem", train_overrides={"max_steps": 2}, eval_splits=("val",), eval_samples=4,
            examples=LEADERBOARD_EXAMPLES[:1], progress=False)
    assert seen[1:] == ["roi", "soft_nls", "asnls"]  # MCN's ASNLS row shows ASNLS's masks


def test_a_saved_model_is_the_trained_run_and_loads_without_pickles(tmp_path, monkeypatch):
    from refseg_lib.demo import load_trained, save_trained, saved_model_path, segment

    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    with pytest.raises(FileNotFoundError, match="reproduce"):
        save_trained("mcn", "cem+asnls")
    run_mcn("cem", train_overrides={"max_steps": 2}, eval_splits=("val",), eval_samples=4,
            progress=False)  # also saves "cem+asnls": its val result under ASNLS
    from_checkpoint = load_trained("mcn", "cem+asnls")  # no saved model yet: the checkpoint
    path = save_trained("mcn", "cem+asnls")
    assert path == saved_model_path("mcn", "cem+asnls") and path.parent.name == "models"
    payload = torch.load(path, weights_only=True)  # plain data and tensors only
    assert payload["evaluation"] == {"postprocess": "asnls"} and "optimizer" not in payload
    for checkpoint in (tmp_path / "checkpoints").iterdir():
        checkpoint.unlink()  # the saved model alone suffices
    saved = load_trained("mcn", "cem+asnls")
    assert saved.net.postprocess == "asnls" and 0 <= saved.scores["overall_iou"] <= 1
    image = torch.rand(3, 80, 80)
    assert torch.equal(segment(saved, image, "the red star").probabilities,
                       segment(from_checkpoint, image, "the red star").probabilities)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read the saved model"):
        load_trained("mcn", "cem+asnls")


def test_a_verdict_other_than_reproduced_names_its_measured_cause():
    floor = record("reference", "category_reader", overall=0.55)
    behind = [record("dmn", "a", overall=0.4), record("dmn", "b", overall=0.5), floor]
    row = judge(_claim(), pd.DataFrame(behind))
    assert row["verdict"] == "not reproduced"
    assert "below the untrained category reader" in row["why"]
    curve = [{"step": s, "overall_iou": v} for s, v in
             ((100, 0.2), (200, 0.3), (300, 0.4), (400, 0.5), (500, 0.6))]
    rising = [record("dmn", "a", overall=0.6, curve=curve), record("dmn", "b", overall=0.7),
              record("reference", "category_reader", overall=0.3)]
    assert "still learning" in judge(_claim(), pd.DataFrame(rising))["why"]
    flat = [record("dmn", "a", overall=0.6), record("dmn", "b", overall=0.7),
            record("reference", "category_reader", overall=0.3)]
    assert "none of the measured ones" in judge(_claim(), pd.DataFrame(flat))["why"]


def test_curves_continue_the_stage_a_run_started_from():
    low = record("dmn", "base-lowres", overall=0.3,
                 curve=[{"step": 50, "overall_iou": 0.1}, {"step": 100, "overall_iou": 0.3}])
    high = record("dmn", "base", overall=0.4,
                  init_from="dmn__base-lowres__shapes-refshape__quick.pt",
                  curve=[{"step": 10, "overall_iou": 0.35}, {"step": 20, "overall_iou": 0.4}])
    floor = record("reference", "category_reader", overall=0.45)
    figure = comparison.curves_plot(pd.DataFrame([low, high, floor]), {("dmn", "base"): "DMN"})
    line = figure.axes[0].lines[0]
    assert list(line.get_xdata()) == [50, 100, 110, 120]
    assert list(line.get_ydata()) == pytest.approx([10, 30, 35, 40])
    labels = [a.get_label() for a in figure.axes[0].lines[1:]]
    assert labels == ["floor: category reader (untrained)"]


@pytest.mark.parametrize("system", ["Only VM", "LSTM-CNN", "DMN", "CMSA+GF", "MCN", "M3Att",
                                    "RIS"])
def test_the_saved_models_score_their_saved_results(system):
    """The trained models the notebooks' figures show are those of the saved runs."""
    from refseg_lib.data import Collate
    from refseg_lib.demo import SHOWN_MODELS, load_trained, saved_model_path
    from refseg_lib.engine import evaluate
    from refseg_lib.experiments import get_profile, load_split

    model, variant = SHOWN_MODELS[system]
    assert saved_model_path(model, variant).exists(), "make reproduce keeps it"
    trained = load_trained(model, variant)
    metric = "count_acc" if model == "ris" else "overall_iou"
    val = load_split("shapes", "val", get_profile("quick", model), num_samples=500, seed=0,
                     task="all" if model == "ris" else None)
    summary = evaluate(trained.net, val, Collate(trained.vocabulary, dataset="shapes"),
                       progress=False).summary
    assert summary[metric] == pytest.approx(trained.scores[metric], abs=0.005)
    assert trained.scores[metric] > 0.30 or model == "only_vm"  # a model that works
