"""REFER data from the command line: ``--split-by``, ``--image-root`` and their environment
variables, ``data check`` on a good root and on each way a root can be wrong (the message
asserted), and a wrong setting refused before the first training step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from refseg_lib.cli import main
from refseg_lib.data.refer_check import DataError, check, locate
from refseg_lib.data.refer_fixture import write_refer_fixture

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

COCO = "images/mscoco/images/train2014"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("REFSEG_DATA", "REFSEG_SPLIT_BY", "REFSEG_IMAGE_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("REFSEG_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    write_refer_fixture(tmp_path / "data", "refcoco", "google")
    return write_refer_fixture(tmp_path / "data", "refcoco", "unc")


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """Exit status and everything printed by ``python -m refseg_lib <args>``."""
    try:
        main(list(args))
        status = 0
    except SystemExit as stop:
        status = 0 if stop.code in (None, 0) else 1
        if isinstance(stop.code, str):
            print(stop.code)
    out = capsys.readouterr()
    return status, out.out + out.err


def test_data_check_on_a_good_root(root: Path, capsys: pytest.CaptureFixture) -> None:
    status, out = run(capsys, "data", "check", "--data-root", str(root))
    assert status == 0 and "no problem found" in out
    assert "refcoco/refs(unc).p: train 3 refs / 6 sentences, val 2 refs / 3 sentences" in out
    assert "refcoco/refs(google).p: train 3 refs / 6 sentences" in out
    assert f"5 named by the refs, all found in {root / COCO}" in out


def _one_level_too_deep(root: Path) -> list[str]:
    return ["--data-root", str(root / "refcoco")]


def _one_level_too_high(root: Path) -> list[str]:
    return ["--data-root", str(root.parent)]


def _unzipped_twice(root: Path) -> list[str]:
    inner = root / "refcoco" / "refcoco"
    inner.mkdir()
    for name in ("instances.json", "refs(unc).p", "refs(google).p"):
        (root / "refcoco" / name).rename(inner / name)
    return ["--data-root", str(root)]


def _another_dataset_only(root: Path) -> list[str]:
    shutil.rmtree(root / "refcoco")
    write_refer_fixture(root, "refcocog", "umd")
    return ["--data-root", str(root), "--dataset", "refcoco"]


def _no_instances(root: Path) -> list[str]:
    (root / "refcoco" / "instances.json").unlink()
    return ["--data-root", str(root)]


def _no_images(root: Path) -> list[str]:
    shutil.rmtree(root / "images")
    return ["--data-root", str(root)]


def _image_root_too_high(root: Path) -> list[str]:
    return ["--data-root", str(root), "--image-root", str(root / "images/mscoco/images")]


def _one_image_missing(root: Path) -> list[str]:
    (root / COCO / "COCO_train2014_000000000004.jpg").unlink()
    return ["--data-root", str(root)]


def _corrupt_image(root: Path) -> list[str]:
    (root / COCO / "COCO_train2014_000000000001.jpg").write_bytes(b"not a jpeg")
    return ["--data-root", str(root)]


# each broken root -> what the message must say (and tell the user to do)
BROKEN = {
    "missing root": (lambda root: ["--data-root", str(root / "nowhere")],
                     ["does not exist", "(from --data-root)", "refcoco.zip"]),
    "root is a file": (lambda root: ["--data-root", str(root / "refcoco" / "instances.json")],
                       ["instances.json (from --data-root) is a file, not a folder"]),
    "one level too deep": (_one_level_too_deep,
                           ["holds instances.json, refs(google).p, refs(unc).p itself",
                            "one level too deep", "use --data-root {root}."]),
    "one level too high": (_one_level_too_high,
                           ["one level too high; use --data-root {root}."]),
    "unzipped twice": (_unzipped_twice, ["holds another refcoco/ folder",
                                         "move its files up into {root}/refcoco"]),
    "another dataset only": (_another_dataset_only,
                             ["has no refcoco/ folder. It holds refcocog: to use one, "
                              "--dataset refcocog.", "refcoco.zip"]),
    "no instances.json": (_no_instances, ["{root}/refcoco/instances.json is missing"]),
    "no images": (_no_images, [f"the image folder {{root}}/{COCO} (the default: neither "
                               "--image-root nor $REFSEG_IMAGE_ROOT is set) does not exist",
                               "train2014.zip", "--image-root <folder>"]),
    "image root one level too high": (_image_root_too_high,
                                      [f"The images are in {{root}}/{COCO}: use --image-root "
                                       f"{{root}}/{COCO}."]),
    "one image missing": (_one_image_missing,
                          ["lacks 1 of the 5 images checked, e.g. "
                           "COCO_train2014_000000000004.jpg"]),
    "corrupt image": (_corrupt_image, ["cannot use {root}/" + COCO +
                                       "/COCO_train2014_000000000001.jpg"]),
}


@pytest.mark.parametrize("case", BROKEN)
def test_data_check_on_a_broken_root(root: Path, case: str,
                                     capsys: pytest.CaptureFixture) -> None:
    breaks, expected = BROKEN[case]
    status, out = run(capsys, "data", "check", *breaks(root))
    assert status == 1 and "problems, and what to do:" in out
    flat = " ".join(out.split())
    for text in expected:
        assert text.format(root=root) in flat, (text, out)


def test_the_scheme_named_wrong(root: Path, capsys: pytest.CaptureFixture) -> None:
    (root / "refcoco" / "refs(unc).p").unlink()
    status, out = run(capsys, "data", "check", "--data-root", str(root), "--split-by", "unc")
    assert status == 1 and "has no refs(unc).p (split scheme unc, from --split-by); it has " \
        "refs(google).p: use --split-by google" in " ".join(out.split())
    status, out = run(capsys, "data", "check", "--data-root", str(root), "--dataset", "refcoco+",
                      "--split-by", "google")
    assert status == 1 and "unknown split_by 'google' (from --split-by) for refcoco+; valid: " \
        "unc" in out


def test_messages_name_the_environment_variable_in_use(
        root: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFSEG_DATA", str(root / "refcoco"))
    status, out = run(capsys, "data", "check")
    flat = " ".join(out.split())
    assert status == 1 and "(from $REFSEG_DATA)" in flat
    assert f"use export REFSEG_DATA={root} (or --data-root {root})" in flat
    monkeypatch.setenv("REFSEG_DATA", str(root))
    monkeypatch.setenv("REFSEG_SPLIT_BY", "umd")
    with pytest.raises(DataError, match=r"'umd' \(from \$REFSEG_SPLIT_BY\) for refcoco"):
        locate("refcoco")
    monkeypatch.setenv("REFSEG_SPLIT_BY", "google")
    monkeypatch.setenv("REFSEG_IMAGE_ROOT", str(root / "elsewhere"))
    with pytest.raises(DataError, match=r"elsewhere \(from \$REFSEG_IMAGE_ROOT\) does not exist"):
        check(locate("refcoco"), ["train"])
    # in Python the arguments are named as such
    with pytest.raises(DataError, match=r"from root=\) holds instances.json"):
        check(locate("refcoco", root / "refcoco"))


def _train(capsys, root: Path, *extra: str) -> tuple[int, str]:
    return run(capsys, "train", "--model", "only_vm", "--dataset", "refcoco", "--data-root",
               str(root), "--steps", "2", "--batch-size", "4", *extra)


def test_split_by_names_the_records_and_the_checkpoint(root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    status, out = _train(capsys, root, "--split-by", "google", "--eval-splits", "val", "test")
    assert status == 0, out
    runs = tmp_path / "reports" / "runs"
    assert {p.name for p in runs.iterdir()} == {
        "only_vm__base__refcoco-google__val__quick.json",
        "only_vm__base__refcoco-google__test__quick.json"}
    assert (tmp_path / "checkpoints" / "only_vm__base__refcoco-google__quick.pt").is_file()
    status, out = run(capsys, "evaluate", "--model", "only_vm", "--dataset", "refcoco",
                      "--data-root", str(root), "--split-by", "google", "--eval-splits", "test")
    assert status == 0 and "test: {" in out


def test_image_root_option_and_variable(root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "photos"
    (root / COCO).rename(elsewhere)
    status, out = _train(capsys, root)
    assert status == 1 and "does not exist" in out and "--image-root" in out
    status, out = _train(capsys, root, "--image-root", str(elsewhere))
    assert status == 0 and "only_vm/base val: {" in out, out
    monkeypatch.setenv("REFSEG_IMAGE_ROOT", str(elsewhere))
    status, out = _train(capsys, root, "--restart")
    assert status == 0 and "only_vm/base val: {" in out, out


@pytest.mark.parametrize("extra, message", [
    (["--eval-splits", "val", "test"], "has no split 'test'; its splits: train, val, testA, "
                                       "testB. Evaluate on those: --eval-splits val testA testB"),
    (["--split-by", "umd"], "unknown split_by 'umd' (from --split-by) for refcoco"),
    (["--data-root", "{root}/refcoco"], "one level too deep"),
])
def test_a_wrong_setting_is_refused_before_the_first_step(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
        extra: list[str], message: str) -> None:
    import refseg_lib.experiments as experiments

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(experiments, "fit", no_training)
    status, out = _train(capsys, root, *[e.format(root=root) for e in extra])
    assert status == 1 and message in " ".join(out.split()) and "Traceback" not in out
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "reports").exists()


def test_shaperef_splits_are_checked_before_training(tmp_path, capsys, monkeypatch) -> None:
    import refseg_lib.experiments as experiments

    monkeypatch.setenv("REFSEG_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setattr(experiments, "fit", lambda *a, **k: pytest.fail("training started"))
    status, out = run(capsys, "train", "--model", "only_vm", "--eval-splits", "val", "test")
    assert status == 1 and "ShapeRef has no split 'test'" in out
