"""Bad input on the command line and in ``run_experiment``: each value is checked before any
work and refused with a message that says what to do; a checkpoint is never resumed with other
settings, never trained into by two processes at once, and never written outside its folder.
(The demo's inputs: tests/test_demo_inputs.py; unreadable run records: tests/test_bad_records.py.)
"""

import subprocess
import sys

import pytest
from test_engine import tiny_data, tiny_model  # ShapeRef samples and a tiny model

from refseg_lib import experiments
from refseg_lib.cli import main
from refseg_lib.engine import CheckpointError, TrainConfig, checkpoint_lock, fit, load_checkpoint
from refseg_lib.experiments import SettingError, checkpoint_path, run_experiment


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Reports and checkpoints in a temporary folder; the working directory there too."""
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refusal(argv: list[str], capsys) -> str:
    """The message the command line stops with (argparse's on stderr, ours as the exit's)."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    code = stopped.value.code
    return code if isinstance(code, str) else capsys.readouterr().err


def no_training(*_, **__):
    raise AssertionError("training started although a value was wrong")


# Values the parser refuses: zero is a value, not "unset" (the profile's 5000 steps, batch 32).
@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "argument --steps: '0' is not a whole number of at least 1"),
    (["--steps", "-3"], "argument --steps: '-3' is not a whole number of at least 1"),
    (["--steps", "ten"], "argument --steps: 'ten' is not a whole number of at least 1"),
    (["--batch-size", "0"], "argument --batch-size: '0' is not a whole number of at least 1"),
    (["--checkpoint-every", "0"],
     "argument --checkpoint-every: '0' is not a whole number of at least 1"),
    (["--seed", "-1"], "argument --seed: '-1' is not a whole number of at least 0"),
    (["--model", "mnc"], "argument --model: invalid choice: 'mnc'"),
], ids=["steps 0", "steps negative", "steps text", "batch 0", "checkpoint-every 0",
        "seed negative", "unknown model"])
def test_the_parser_refuses_counts_below_one_and_unknown_models(argv, message, folders, capsys,
                                                               monkeypatch):
    monkeypatch.setattr(experiments, "fit", no_training)
    argv = ["train", *(["--model", "only_vm"] if "--model" not in argv else []), *argv]
    assert message in refusal(argv, capsys)
    assert not (folders / "checkpoints").exists() and not (folders / "reports").exists()


# Settings refused before the data is read or a step is taken.
@pytest.mark.parametrize("argv, message", [
    (["--model-config", "{dropout: 0.9}"],
     "error: --model-config '{dropout: 0.9}' is not JSON (Expecting property name enclosed in "
     "double quotes at character 1): give an object of the model's settings in single quotes, "
     """e.g. --model-config '{"dropout": 0.2, "rnn": "sru"}'"""),
    (["--model-config", '{"dropuot": 0.9}'],
     """error: --model-config {"dropuot": 0.9} does not build mcn: 'dropuot' is not a setting """
     "of mcn (did you mean 'dropout'?). mcn's settings: anchors, aspp_dim,"),
    (["--model-config", '{"cem": "nonsense"}'],
     """error: --model-config {"cem": "nonsense"} does not build mcn: cem must be one of"""),
    (["--model-config", "[0.9]"],
     """error: --model-config must be a JSON object of mcn's settings, e.g. {"dropout": 0.2}; """
     "got list [0.9]"),
    (["--model-config", '{"vocab_size": 3}'],
     "error: --model-config sets vocab_size, which the run sets itself (from its vocabulary and "
     "profile): leave it out"),
    (["--variant", "x/../../escaped"],
     "error: --variant 'x/../../escaped' cannot name a run: a run's name becomes part of its "
     "checkpoint's and records' file names, so it may hold only letters, digits and . _ + - "
     "(and not start with a dot), e.g. --variant x-escaped"),
    (["--variant", ".hidden"], "error: --variant '.hidden' cannot name a run"),
    (["--eval-splits", "nonsense"],
     "error: ShapeRef has no split 'nonsense'; its splits: train, val, testA, testB (e.g. "
     "--eval-splits val testA testB)"),
    (["--eval-splits", "val", "val"],
     "error: --eval-splits lists val more than once: list each split once"),
    (["--style", "refshape++"], "error: unknown ShapeRef style 'refshape++'; valid: "),
    (["--init-from", "missing.pt"],
     "error: --init-from missing.pt: no such file. It takes the checkpoint of an earlier run (a "
     ".pt that training wrote, e.g. "),
    (["--task", "all"],
     "error: --task all trains recurrent instance segmentation: use --model ris (not mcn), or "
     "leave --task out"),
    (["--split-by", "unc"],
     "error: --split-by set where a REFER dataset is read, but --dataset is shapes (ShapeRef, "
     "generated: no files): add --dataset refcoco (or refcoco+, refcocog, refclef), or leave "
     "--split-by out"),
    (["--dataset", "refcoco", "--style", "refshape+"],
     "error: --style refshape+ sets ShapeRef's expression style, but --dataset is refcoco: leave "
     "--style out (a REFER dataset's variant is its split scheme, --split-by)"),
], ids=["config not JSON", "config misspelled key", "config bad value", "config not an object",
        "config sets vocab_size", "variant escapes", "variant hidden", "unknown split",
        "split twice", "unknown style", "init-from missing", "task without ris",
        "split-by on shapes", "style on refcoco"])
def test_train_checks_every_setting_before_any_work(argv, message, folders, capsys, monkeypatch):
    monkeypatch.setattr(experiments, "fit", no_training)
    monkeypatch.setattr(experiments, "load_split", no_training)
    assert refusal(["train", "--model", "mcn", *argv], capsys).startswith(message)
    assert not (folders / "checkpoints").exists() and not (folders / "reports").exists()
    assert not list(folders.parent.glob("escaped*"))


def test_the_command_line_passes_zero_free_counts_and_checkpoint_every(folders, monkeypatch):
    seen = {}
    monkeypatch.setattr(experiments, "run_experiment",
                        lambda *_, **kwargs: seen.update(kwargs) or no_training())
    with pytest.raises(AssertionError, match="training started"):
        main(["train", "--model", "only_vm", "--steps", "3", "--checkpoint-every", "1"])
    assert seen["train_overrides"] == {"max_steps": 3, "checkpoint_every": 1}
    with pytest.raises(AssertionError, match="training started"):
        main(["train", "--model", "only_vm"])
    assert seen["train_overrides"] == {}  # the profile's values


@pytest.mark.parametrize("variant", ["x/../../escaped", "../up", "/abs", "a\\b", "", ".."])
def test_names_never_lead_outside_the_checkpoint_folder(variant, folders):
    path = checkpoint_path("mcn", variant, "shapes", "../../s", "quick")
    assert path.parent == folders / "checkpoints" and not path.name.startswith(".")
    with pytest.raises(SettingError, match="cannot name a run"):
        run_experiment("mcn", variant=variant)


def tiny_run(**kwargs):
    """Two steps of LSTM-CNN on ShapeRef, evaluated on 4 samples, with records."""
    options = dict(variant="mine", train_overrides={"max_steps": 2, "batch_size": 4},
                   eval_samples=4, progress=False)
    return run_experiment("lstm_cnn", **{**options, **kwargs})


@pytest.mark.parametrize("change, message", [
    (dict(model_config={"hidden_dim": 24}),
     "was trained with other settings (model_config: {} -> {'hidden_dim': 24}): resuming would "
     "mix two runs in one. To train with these settings, start over (--restart on the command "
     "line, resume=False in Python, or delete the file) or train under another variant name "
     "(--variant NAME, variant=), which keeps its own checkpoint; to resume, give the settings "
     "it was trained with"),
    (dict(seed=1), "was trained with other settings (seed: 0 -> 1; data_seed: 0 -> 1; "
                   "vocabulary: '51 words, sha256 "),
    (dict(style="refshape+"), None),  # another benchmark: its own checkpoint, no refusal
    (dict(train_overrides={"max_steps": 1, "batch_size": 4}),
     "has already trained 2 steps, more than the 1 asked for: ask for 2 or more to resume it, "
     "or start over (--restart on the command line, resume=False in Python, or delete the "
     "file)"),
], ids=["model config", "seed", "other style", "fewer steps"])
def test_a_checkpoint_resumes_only_with_the_settings_it_was_trained_with(change, message,
                                                                        folders):
    first = tiny_run()
    stored = load_checkpoint(first.checkpoint)["settings"]
    assert stored["model"] == "lstm_cnn" and stored["model_config"] == {}
    assert stored["benchmark"] == "refshape" and stored["vocabulary"].startswith(
        f"{len(first.vocabulary)} words")
    if message is None:
        assert tiny_run(**change).train.resumed_from is None
        return
    with pytest.raises(CheckpointError, match="^checkpoint .*") as refused:
        tiny_run(**change)
    assert message in str(refused.value)
    assert tiny_run(**change, resume=False).train.resumed_from is None  # --restart
    assert tiny_run(**change, variant="mine-2").train.resumed_from is None  # another variant


def test_evaluate_uses_the_checkpoints_own_model_config(folders, capsys):
    tiny_run(model_config={"hidden_dim": 24})
    main(["evaluate", "--model", "lstm_cnn", "--variant", "mine"])  # no --model-config needed
    assert "val: {" in capsys.readouterr().out
    assert refusal(["evaluate", "--model", "lstm_cnn", "--variant", "mine", "--model-config",
                    '{"hidden_dim": 32}'], capsys).endswith(
        """was trained with --model-config '{"hidden_dim": 24}', not '{"hidden_dim": 32}': """
        "leave --model-config out (the checkpoint's own is used)")
    checkpoint = str(checkpoint_path("lstm_cnn", "mine", "shapes", "refshape", "quick"))
    assert refusal(["evaluate", "--model", "only_vm", "--checkpoint", checkpoint],
                   capsys).endswith("is a checkpoint of lstm_cnn, not only_vm: use --model "
                                    "lstm_cnn")


def test_a_second_process_cannot_train_into_a_locked_checkpoint(folders):
    path = checkpoint_path("lstm_cnn", "mine", "shapes", "refshape", "quick")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom refseg_lib.engine import checkpoint_lock\n"
         "with checkpoint_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)",
         str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointError, match=(
                rf"^another run is training into checkpoint {path} \(pid {holder.pid} on .*\): "
                "two runs on one checkpoint would overwrite each other's checkpoint and records. "
                r"Wait until it ends, or train this one under another variant name \(--variant "
                r"NAME, variant=\)$")):
            tiny_run()
        assert not (folders / "reports").exists()  # nothing written
    finally:
        holder.kill()  # killed: the system releases its lock
        holder.wait()
    assert tiny_run().train.steps == 2
    assert not path.with_name(path.name + ".lock").exists()
    with checkpoint_lock(path), checkpoint_lock(path):  # the same process may take it again
        pass


def test_a_checkpoint_is_written_every_few_minutes(folders):
    data = tiny_data()
    path = folders / "run.pt"

    def killed_after_three(step, _):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # no step checkpoint due before the end (step 50)
        fit(tiny_model(data.vocab_size), data.train, data.collate,
            TrainConfig(max_steps=50, batch_size=8), checkpoint_path=path, progress=False,
            callbacks=[killed_after_three], checkpoint_minutes=1e-9)
    assert load_checkpoint(path)["progress"]["step"] == 3
    with pytest.raises(ValueError, match="checkpoint_minutes must be positive"):
        fit(tiny_model(data.vocab_size), data.train, data.collate,
            TrainConfig(max_steps=1, batch_size=8), checkpoint_minutes=0)


def test_a_missing_starting_checkpoint_is_named_as_missing(folders):
    from refseg_lib.engine import init_weights_from
    from refseg_lib.models import build_model

    net = build_model("only_vm")
    with pytest.raises(FileNotFoundError, match=r"^no checkpoint at nothere.pt: give the .pt "):
        init_weights_from(net, "nothere.pt")
    with pytest.raises(SettingError, match=r"^init_from= nothere.pt: no such file"):
        tiny_run(init_from="nothere.pt")
