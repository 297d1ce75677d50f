"""The command line end to end: train a few steps, evaluate the checkpoint, rebuild reports."""

import os
import subprocess
import sys


def run(*args, env):
    result = subprocess.run([sys.executable, "-m", "refseg_lib", *args], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_train_evaluate_report(tmp_path):
    env = {**os.environ, "REFSEG_REPORTS": str(tmp_path / "reports"),
           "REFSEG_CHECKPOINTS": str(tmp_path / "checkpoints"), "OMP_NUM_THREADS": "1"}
    out = run("train", "--model", "lstm_cnn", "--steps", "3", "--batch-size", "4", env=env)
    assert "lstm_cnn/base val: {" in out and "overall_iou" in out
    record = tmp_path / "reports" / "runs" / "lstm_cnn__base__shapes-refshape__val__quick.json"
    assert record.is_file()
    assert (tmp_path / "checkpoints" / "lstm_cnn__base__shapes-refshape__quick.pt").is_file()
    assert "val: {" in run("evaluate", "--model", "lstm_cnn", env=env)
    run("report", env=env)
    assert "lstm_cnn" in (tmp_path / "reports" / "baselines.md").read_text()


def test_evaluate_without_training_says_what_to_do(tmp_path):
    env = {**os.environ, "REFSEG_CHECKPOINTS": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "refseg_lib", "evaluate", "--model", "only_vm"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "train first" in result.stderr


def test_train_and_evaluate_an_instance_task(tmp_path):
    env = {**os.environ, "REFSEG_REPORTS": str(tmp_path / "reports"),
           "REFSEG_CHECKPOINTS": str(tmp_path / "checkpoints"), "OMP_NUM_THREADS": "1"}
    out = run("train", "--model", "ris", "--task", "all", "--steps", "2", "--batch-size", "4",
              env=env)
    assert "ris/base val: {" in out and "count_acc" in out
    assert "sbd" in run("evaluate", "--model", "ris", "--task", "all", env=env)
