"""The main job's plan (refseg_lib.plan): what it trains, that it skips what is recorded, runs
jobs side by side and reports failures, and which runs a close claim trains again."""

from __future__ import annotations

import json

import pytest

from refseg_lib import experiments, plan
from refseg_lib.models import cmsa, dmn, mcn
from refseg_lib.plan import Call, Job, is_done, plan_jobs, read_manifest, run_plan


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    return tmp_path


def tiny(name: str, steps: int = 2, **kwargs) -> Job:
    """A job of a few steps on a few samples."""
    call = Call.of("run_experiment", "only_vm", variant=name, eval_splits=["val"],
                   eval_samples=8, progress=False,
                   train_overrides={"max_steps": steps, "batch_size": 4}, **kwargs)
    return Job(f"only_vm {name}", "00b", "only_vm", steps, (call,))


def test_the_plan_trains_every_table_row_and_every_style_of_the_full_models():
    jobs = plan_jobs(minilm=False)
    names = [j.name for j in jobs]
    assert len(names) == len(set(names))
    calls = [json.loads(c.arguments) | {"function": c.function} for j in jobs for c in j.calls]

    def trained(function, variant, style="refshape"):
        return any(c["function"] == function and variant in c["args"] + [
            c["kwargs"].get("variant")] and c["kwargs"].get("style", "refshape") == style
            for c in calls)

    for variant in dmn.VARIANTS:
        assert trained("run_dmn", variant), variant
    for variant in cmsa.VARIANTS:
        assert trained("run_cmsa", variant), variant
    for variant in mcn.VARIANTS:
        assert trained("run_mcn", variant), variant
    for style in experiments.LEADERBOARD_STYLES:
        for function, variant in (("run_dmn", "base"), ("run_cmsa", "base"), ("run_mcn", "cem"),
                                  ("run_m3att", "lfr")):
            assert trained(function, variant, style), (function, style)
        assert any(j.name == f"reference {style}" for j in jobs)
    with_examples = {j.model for j in jobs for c in j.calls if "examples" in c.arguments}
    assert with_examples == {m for m, _ in experiments.LEADERBOARD.values()}
    assert {j.notebook for j in jobs} == {"00", "00b", "01", "02", "05", "06b", "07", "08", "09"}
    assert [j.name for j in plan_jobs(notebooks=["01"])] == ["lstm_cnn sru"]


def test_a_job_is_fingerprinted_by_its_calls_and_budget_and_refuses_unknown_functions():
    assert tiny("a").fingerprint == tiny("a").fingerprint
    assert tiny("a").fingerprint != tiny("a", steps=3).fingerprint
    assert tiny("a").fingerprint != tiny("b").fingerprint
    with pytest.raises(ValueError, match="no run function"):
        Call.of("run_everything")
    second = plan_jobs(notebooks=["06b"])[0].with_seed()
    arguments = json.loads(second.calls[0].arguments)["kwargs"]
    assert arguments["suffix"] == "-seed1" and arguments["train_overrides"]["seed"] == 1
    assert second.name.endswith("seed 1")


def test_a_second_run_skips_what_is_recorded_and_a_change_retrains(folders, monkeypatch):
    first = run_plan([tiny("a")], n_jobs=1, progress=False)
    assert is_done(tiny("a"), first) and first["only_vm a"]["records"] == [
        "only_vm__a__shapes-refshape__val__quick.json"]
    assert read_manifest() == first

    def never(*args):
        raise AssertionError("a recorded job ran again")

    monkeypatch.setattr(plan, "_run_job", never)
    assert run_plan([tiny("a")], n_jobs=1, progress=False) == first
    with pytest.raises(RuntimeError, match="only_vm a: AssertionError"):
        run_plan([tiny("a", steps=3)], n_jobs=1, progress=False)  # another budget: retrains
    (folders / "reports" / "runs" / "only_vm__a__shapes-refshape__val__quick.json").unlink()
    assert not is_done(tiny("a"), read_manifest())  # a deleted record: the job is due again


def test_jobs_run_side_by_side_and_a_failure_does_not_stop_the_others(folders):
    broken = Job("broken", "00b", "only_vm", 1, (Call.of(
        "run_experiment", "no_such_model", progress=False),))
    with pytest.raises(RuntimeError, match="1 of 3 jobs failed.*broken"):
        run_plan([tiny("a"), tiny("b"), broken], n_jobs=2, progress=False)
    manifest = read_manifest()
    assert set(manifest) == {"only_vm a", "only_vm b"}
    assert all(entry["seconds"] > 0 for entry in manifest.values())


def test_second_seeds_go_to_the_jobs_that_wrote_a_close_claims_records(folders, monkeypatch):
    jobs = [tiny("a"), tiny("b")]
    manifest = run_plan(jobs, n_jobs=1, progress=False)
    monkeypatch.setattr("refseg_lib.reports.claims.close_calls",
                        lambda records: {("only_vm", "b", "refshape")})
    again = plan.second_seed_jobs(jobs, manifest)
    assert [j.name for j in again] == ["only_vm b seed 1"]
    done = run_plan(again, n_jobs=1, progress=False)
    assert done["only_vm b seed 1"]["records"] == [
        "only_vm__b-seed1__shapes-refshape__val__quick.json"]


def test_budget_jobs_train_each_full_model_twice_as_long():
    jobs = {j.name: j for j in plan.budget_jobs()}
    assert set(jobs) == {"only_vm base x2", "lstm_cnn base x2", "dmn base x2", "cmsa base x2",
                         "mcn cem x2", "m3att lfr x2", "ris all-curriculum x2"}
    dmn = json.loads(jobs["dmn base x2"].calls[0].arguments)["kwargs"]
    assert dmn["stage_steps"] == [2 * s for s in experiments.DMN_STAGE_STEPS["quick"]]
    assert dmn["suffix"] == "-2x" and len(jobs["dmn base x2"].calls) == 1
    lstm = json.loads(jobs["lstm_cnn base x2"].calls[0].arguments)["kwargs"]
    assert lstm["variant"] == "base-2x" and "examples" not in lstm
    assert lstm["train_overrides"]["max_steps"] == 2 * experiments.PROFILES["quick"].train.max_steps
