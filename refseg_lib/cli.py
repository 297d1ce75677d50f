"""Command line: ``python -m refseg_lib {train,evaluate,report,reproduce,execute-notebooks,
setup-cells}``.

- ``reproduce`` is the main job: it trains every run of ``plan.plan_jobs`` not yet recorded
  (``--jobs`` at a time, one progress bar with the time left; a second call with nothing
  changed trains nothing), re-executes every lesson notebook with papermill in the chosen
  profile (``full=True``: the notebook reads those runs), keeps the executed copies in
  ``reports/executed/``, then rebuilds every report from the run records and the results
  section of README.md.
- ``train`` trains one registered model and records its evaluation; ``evaluate`` re-evaluates
  a trained checkpoint; ``report`` rebuilds ``reports/`` from ``reports/runs/``.
- ``execute-notebooks`` re-executes the committed notebooks in place with their default
  parameters, which is what nbval checks and what readers see.
- ``setup-cells`` writes the Colab badge and the setup cell (``refseg_lib.course``) into every
  notebook.
- ``data check`` prints what a REFER data root holds (datasets, split schemes, refs and
  sentences per split, images found) and what to do about each problem.

A REFER dataset is read from ``--data-root`` (or ``$REFSEG_DATA``) with ``--split-by`` (or
``$REFSEG_SPLIT_BY``) and its images from ``--image-root`` (or ``$REFSEG_IMAGE_ROOT``).
``train`` and ``evaluate`` check every value before any work (counts are whole numbers of at
least 1, the model and its ``--model-config``, the variant name, the starting checkpoint, the
data and every split), and a wrong one stops them with a message that names it and says what
to do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from refseg_lib.data import REFER_DATASETS
from refseg_lib.data.refer_check import DataError
from refseg_lib.engine import CheckpointError
from refseg_lib.experiments import SettingError
from refseg_lib.paths import REPO_ROOT, atomic_write_text, notebooks_dir, reports_dir

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def _notebooks(selection: list[str] | None) -> list[Path]:
    found = sorted(notebooks_dir().glob("[0-9][0-9]*_*.ipynb"))
    if selection:
        found = [nb for nb in found if any(nb.name.startswith(s) for s in selection)]
    if not found:
        sys.exit(f"no notebooks match {selection} in {notebooks_dir()}")
    return found


def reproduce(profile: str, selection: list[str] | None, jobs: int | None = None,
              force: bool = False) -> None:
    """The main job: train every run of the plan not yet recorded (``jobs`` at a time, one
    progress bar), execute the notebooks with ``full=True`` (they find their runs recorded),
    then rebuild every report and README's results."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        import papermill
    except ImportError as error:
        raise SystemExit("reproduce executes the notebooks with papermill, which is not "
                         "installed: pip install 'refseg_lib[notebooks]'") from error

    from refseg_lib.plan import available_cores, run_main_job

    start = time.perf_counter()
    if not selection:
        run_main_job(profile, n_jobs=jobs, force=force)
        print(f"[reproduce] runs done in {time.perf_counter() - start:.0f} s", flush=True)
        for path in save_models(profile):
            print(f"[reproduce] kept {path.relative_to(reports_dir())}", flush=True)
    executed = reports_dir() / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    notebooks = _notebooks(selection)
    workers = max(1, min(jobs or available_cores(), len(notebooks)))

    def execute(notebook: Path) -> str:
        declared = papermill.inspect_notebook(str(notebook))
        parameters = {k: v for k, v in {"profile": profile, "full": True}.items()
                      if k in declared}
        tic = time.perf_counter()
        papermill.execute_notebook(str(notebook), str(executed / notebook.name),
                                   parameters=parameters, cwd=str(notebook.parent),
                                   kernel_name="python3", progress_bar=False)
        return f"[reproduce] {notebook.name} {parameters} in {time.perf_counter() - tic:.0f} s"

    # each kernel on its share of the cores, as the plan's jobs
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // workers)))
    failed = []
    with ThreadPoolExecutor(workers) as pool:
        for notebook, future in [(nb, pool.submit(execute, nb)) for nb in notebooks]:
            try:
                print(future.result(), flush=True)
            except Exception as error:  # every notebook runs; the failures are listed at the end
                failed.append(f"{notebook.name}: {type(error).__name__}: {str(error)[-400:]}")
    if failed:
        sys.exit("[reproduce] notebooks failed (their executed copies in reports/executed/ show "
                 "the cell):\n" + "\n".join(failed))
    report()
    print(f"[reproduce] done in {time.perf_counter() - start:.0f} s", flush=True)


def save_models(profile: str) -> list[Path]:
    """Keep each system's trained full model in ``reports/models/`` (the figures' models)."""
    from refseg_lib.demo import SHOWN_MODELS, save_trained

    return [save_trained(model, variant, profile=profile)
            for model, variant in SHOWN_MODELS.values()]


def report() -> list[Path]:
    """Rebuild every report from the run records, and README.md's results section."""
    from refseg_lib.records import load_run_records
    from refseg_lib.reports import build_reports
    from refseg_lib.reports.comparison import readme_section

    records = load_run_records()
    written = build_reports(records)
    readme = REPO_ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    ours = reports_dir().resolve() == (REPO_ROOT / "reports").resolve()  # not a test's folder
    if ours and README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        text = (f"{head}{README_START}\n{readme_section(records)}\n{README_END}"
                f"{rest.split(README_END, 1)[1]}")
        atomic_write_text(readme, text)
    for path in written:
        print(f"[report] {path.relative_to(reports_dir().parent)}")
    return written


def execute_in_place(selection: list[str] | None, timeout: int) -> None:
    import nbformat
    from nbclient import NotebookClient

    for notebook in _notebooks(selection):
        start = time.perf_counter()
        nb = nbformat.read(notebook, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
        text = nbformat.writes(nb)
        atomic_write_text(notebook, text if text.endswith("\n") else text + "\n")
        print(f"{notebook.name}: executed in {time.perf_counter() - start:.0f} s", flush=True)


def _check_data(args: argparse.Namespace, splits: list[str]) -> str:
    """The data checked before any work (``experiments.check_data``, named as on the command
    line); the benchmark's variant: the ShapeRef style or the REFER split scheme."""
    from refseg_lib.experiments import check_data

    return check_data(args.dataset, splits, style=args.style, root=args.data_root,
                      split_by=args.split_by, image_root=args.image_root, cli=True)


def _model_config(args: argparse.Namespace) -> dict:
    """``--model-config``, parsed and checked against the model (``experiments.
    check_model_config``)."""
    from refseg_lib.experiments import check_model_config

    try:
        config = json.loads(args.model_config)
    except json.JSONDecodeError as error:
        raise SettingError(
            f"--model-config {args.model_config!r} is not JSON ({error.msg} at character "
            f"{error.pos}): give an object of the model's settings in single quotes, e.g. "
            """--model-config '{"dropout": 0.2, "rnn": "sru"}'""") from None
    return check_model_config(args.model, config, args.profile, option="--model-config")


def _check_run(args: argparse.Namespace, splits: list[str]) -> tuple[str, dict]:
    """Every value of a ``train`` or ``evaluate`` command checked before any work: the variant
    name, the model and its configuration, the splits and the data. Returns the benchmark's
    variant (``_check_data``) and the model configuration."""
    from refseg_lib.experiments import check_name

    check_name(args.variant, "--variant")
    config = _model_config(args)
    twice = sorted({s for s in args.eval_splits if args.eval_splits.count(s) > 1})
    if twice:
        raise SettingError(f"--eval-splits lists {', '.join(twice)} more than once: list each "
                           "split once")
    refer = [option for option, value in (("--split-by", args.split_by),
                                          ("--image-root", args.image_root),
                                          ("--data-root", args.data_root)) if value is not None]
    if args.dataset == "shapes" and refer:
        raise SettingError(f"{' and '.join(refer)} set where a REFER dataset is read, but "
                           "--dataset is shapes (ShapeRef, generated: no files): add --dataset "
                           f"refcoco (or refcoco+, refcocog, refclef), or leave {refer[0]} out")
    if args.dataset != "shapes" and args.style is not None:
        raise SettingError(f"--style {args.style} sets ShapeRef's expression style, but "
                           f"--dataset is {args.dataset}: leave --style out (a REFER dataset's "
                           "variant is its split scheme, --split-by)")
    args.style = args.style or "refshape"
    if args.task is not None and args.model != "ris":
        raise SettingError(f"--task {args.task} trains recurrent instance segmentation: use "
                           f"--model ris (not {args.model}), or leave --task out")
    return _check_data(args, splits), config


def train(args: argparse.Namespace) -> None:
    from refseg_lib.experiments import check_init_from, run_experiment

    _, model_config = _check_run(args, ["train", *args.eval_splits])
    check_init_from(args.init_from, "--init-from")
    # None: the profile's value; 0 is refused by the parser (_count), never read as "unset"
    overrides = {name: value for name, value in (
        ("max_steps", args.steps), ("batch_size", args.batch_size),
        ("checkpoint_every", args.checkpoint_every)) if value is not None}
    experiment = run_experiment(
        args.model, variant=args.variant, dataset=args.dataset, style=args.style,
        profile=args.profile, eval_splits=tuple(args.eval_splits), seed=args.seed,
        model_config=model_config, train_overrides=overrides,
        root=args.data_root, split_by=args.split_by, image_root=args.image_root,
        source="python -m refseg_lib train", resume=not args.restart,
        init_from=args.init_from, task=args.task)
    for split, evaluation in experiment.evaluations.items():
        shown = {k: round(v, 4) for k, v in evaluation.summary.items() if k != "n"}
        print(f"{args.model}/{args.variant} {split}: {shown}")
    for path in experiment.records:
        print(f"[record] {path}")


def evaluate_checkpoint(args: argparse.Namespace) -> None:
    from refseg_lib.data import Collate, Vocabulary
    from refseg_lib.engine import evaluate, load_checkpoint, load_model_weights
    from refseg_lib.experiments import build_for, checkpoint_path, get_profile, load_split

    style, given = _check_run(args, args.eval_splits)
    path = Path(args.checkpoint) if args.checkpoint else checkpoint_path(
        args.model, args.variant, args.dataset, style, args.profile)
    vocab_file = path.with_suffix(".vocab.json")
    if not path.is_file() or not vocab_file.is_file():
        sys.exit(f"no trained checkpoint at {path} (or its vocabulary {vocab_file.name}): "
                 "train first with `python -m refseg_lib train ...`")
    checkpoint = load_checkpoint(path)
    settings = checkpoint.get("settings") or {}  # the run's own model and config
    if settings and settings["model"] != args.model:
        raise SettingError(f"{path} is a checkpoint of {settings['model']}, not "
                           f"{args.model}: use --model {settings['model']}")
    config = settings.get("model_config", given)
    if args.model_config.strip() != "{}" and given != config:
        raise SettingError(f"{path} was trained with --model-config '{json.dumps(config)}', "
                           f"not '{json.dumps(given)}': leave --model-config out (the "
                           "checkpoint's own is used)")
    vocabulary = Vocabulary.from_state_dict(json.loads(vocab_file.read_text()))
    model = build_for(args.model, args.profile, vocabulary, config)
    load_model_weights(model, path, checkpoint)
    profile = get_profile(args.profile)
    for split in args.eval_splits:
        data = load_split(args.dataset, split, profile, style=args.style,
                          num_samples=profile.eval_samples, seed=args.seed, root=args.data_root,
                          split_by=args.split_by, image_root=args.image_root, task=args.task)
        result = evaluate(model, data, Collate(vocabulary, dataset=args.dataset))
        print(f"{split}: {({k: round(v, 4) for k, v in result.summary.items()})}")


def data_check(args: argparse.Namespace) -> None:
    """``data check``: what the data root holds; exit status 1 when something is wrong."""
    from refseg_lib.data.refer_check import describe_root

    lines, problems = describe_root(args.data_root, args.dataset or (), args.split_by,
                                    args.image_root, cli=True)
    print("\n".join(lines))
    if problems:
        print("\nproblems, and what to do:\n" + "\n".join(f"- {p}" for p in problems))
        sys.exit(1)
    print("\nno problem found")


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None,
                        help="REFER data root (default: $REFSEG_DATA, else data/)")
    parser.add_argument("--split-by", default=None,
                        help="REFER split scheme, e.g. unc, google, umd, berkeley (default: "
                        "$REFSEG_SPLIT_BY, else the dataset's usual one: umd for refcocog, "
                        "unc for the others)")
    parser.add_argument("--image-root", default=None,
                        help="folder of the dataset's images (default: $REFSEG_IMAGE_ROOT, else "
                        "<data root>/images/mscoco/images/train2014, or .../saiapr_tc-12)")


def _count(text: str, least: int = 1) -> int:
    """An argparse type: a whole number of at least ``least`` (0 is a value, never "unset")."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < least:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least {least}")
    return value


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from refseg_lib.models import list_models

    parser.add_argument("--model", required=True, choices=list_models(), metavar="MODEL",
                        help=f"registry name: {', '.join(list_models())}")
    parser.add_argument("--variant", default="base", help="name of the configuration/ablation "
                        "(letters, digits and . _ + -): names the checkpoint and the records")
    parser.add_argument("--model-config", default="{}",
                        help="""JSON object of model settings, e.g. '{"dropout": 0.2}'""")
    parser.add_argument("--dataset", default="shapes",
                        choices=("shapes", "refcoco", "refcoco+", "refcocog", "refclef"))
    parser.add_argument("--style", default=None, help="ShapeRef expression style: refshape "
                        "(default), refshape+, refshape-g")
    parser.add_argument("--profile", choices=("quick", "paper"), default="quick")
    parser.add_argument("--eval-splits", nargs="+", default=["val"])
    parser.add_argument("--seed", type=lambda text: _count(text, 0), default=0)
    parser.add_argument("--task", default=None, choices=("all", "plural"),
                        help="instance task instead of the referent (notebook 08; model ris)")
    _add_data_arguments(parser)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m refseg_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rep = commands.add_parser("reproduce", help="papermill every notebook, rebuild reports/")
    rep.add_argument("--profile", choices=("quick", "paper"), default="quick")
    rep.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02 (their "
                     "notebooks only: the plan's runs they read must be recorded or they train "
                     "them one at a time)")
    rep.add_argument("--jobs", type=_count, default=None,
                     help="trainings and notebooks at once (default: the number of cores)")
    rep.add_argument("--force", action="store_true",
                     help="retrain every run, even those recorded with the same settings")
    commands.add_parser("report", help="rebuild reports/ from reports/runs/")
    tra = commands.add_parser("train", help="train a model, evaluate it, write run records")
    _add_run_arguments(tra)
    tra.add_argument("--steps", type=_count, default=None,
                     help="training steps (default: the profile's)")
    tra.add_argument("--batch-size", type=_count, default=None,
                     help="samples per step (default: the profile's)")
    tra.add_argument("--checkpoint-every", type=_count, default=None, metavar="STEPS",
                     help="write the checkpoint every STEPS steps (default: the profile's); one "
                     "is also written every few minutes and at the end")
    tra.add_argument("--restart", action="store_true",
                     help="train from scratch, replacing the run's checkpoint")
    tra.add_argument("--init-from", default=None,
                     help="checkpoint of an earlier stage to start from (e.g. DMN's low-resolution "
                     "run), loaded where names and shapes match")
    eva = commands.add_parser("evaluate", help="evaluate a trained checkpoint")
    _add_run_arguments(eva)
    eva.add_argument("--checkpoint", default=None, help="default: the run's own checkpoint")
    exe = commands.add_parser("execute-notebooks", help="execute committed notebooks in place")
    exe.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 02")
    exe.add_argument("--timeout", type=_count, default=900, help="per-cell timeout in seconds")
    commands.add_parser("setup-cells", help="write the Colab badge and the setup cell into "
                        "every notebook (after changing the repository URL or the version)")
    data = commands.add_parser("data", help="check a REFER data root")
    checks = data.add_subparsers(dest="action", required=True)
    check = checks.add_parser("check", help="what a data root holds and what to do about each "
                              "problem (exit status 1 when there is one)")
    check.add_argument("--dataset", nargs="*", choices=REFER_DATASETS,
                       help="the datasets to check (default: those found under the root)")
    _add_data_arguments(check)
    args = parser.parse_args(argv)
    try:
        _run(args)
    except (DataError, SettingError, CheckpointError) as error:  # each says what to do
        sys.exit(f"error: {error}")


def _run(args: argparse.Namespace) -> None:
    if args.command == "data":
        data_check(args)
    elif args.command == "reproduce":
        reproduce(args.profile, args.only, args.jobs, args.force)
    elif args.command == "report":
        report()
    elif args.command == "train":
        train(args)
    elif args.command == "evaluate":
        evaluate_checkpoint(args)
    elif args.command == "setup-cells":
        from refseg_lib.course import sync_notebooks

        for path in sync_notebooks():
            print(f"updated {path.name}: execute it again (make notebooks)")
    else:
        execute_in_place(args.only, args.timeout)


if __name__ == "__main__":
    main()
