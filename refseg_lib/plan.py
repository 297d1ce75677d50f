"""The main job as a plan: every training run the course's tables read, as independent jobs that
run in parallel and are skipped once recorded.

``plan_jobs`` lists the runs of each training notebook (``full=True``) and of the leaderboard;
``run_plan`` runs those not yet done, ``jobs`` at a time, each on ``cores // jobs`` threads,
under one progress bar with the time left. ``python -m refseg_lib reproduce`` and the
notebooks' ``full=True`` branches call the same two functions, so a table never reads a run
trained another way.

A job is one or more calls of an ``experiments.run_*`` function run in order (DMN's variants
that share a first stage); jobs share no checkpoint, so any of them can run beside any other.
What a finished job wrote is kept in ``reports/plan.json`` with its fingerprint (its calls, its
budget and the profile's settings): a job whose fingerprint is unchanged and whose records all
exist is skipped, so a second ``reproduce`` with nothing changed trains nothing.

After the first pass, ``claims.close_calls`` names the claims whose lead is under one point:
both sides are trained again with a second seed (``<variant>-seed1``), and the ledger calls a
claim whose two seeds disagree inconclusive.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from refseg_lib import experiments
from refseg_lib.experiments import DOUBLE_SUFFIX
from refseg_lib.paths import atomic_write, notebooks_dir, reports_dir

SHAPES_SPLITS = ("val", "testA", "testB")
SECOND_SEED = 1
SECOND_SEED_SUFFIX = "-seed1"
# Seconds per training step of a job on one of two busy cores at the quick profile's size,
# evaluations included (measured from the main job's runs): only the progress bar's estimate
# and the order jobs start in (longest first) depend on them.
STEP_SECONDS = {"only_vm": 0.06, "lstm_cnn": 0.06, "dmn": 0.15, "cmsa": 0.2, "mcn": 0.1,
                "m3att": 0.12, "ris": 0.25, "reference": 0.0}


@dataclass(frozen=True)
class Call:
    """One call ``experiments.<function>(*args, **kwargs)``; the arguments as JSON text, so
    that a call is hashable, picklable and fingerprinted by its text."""

    function: str
    arguments: str  # JSON: {"args": [...], "kwargs": {...}}

    @classmethod
    def of(cls, function: str, *args: Any, **kwargs: Any) -> Call:
        if not callable(getattr(experiments, function, None)):
            raise ValueError(f"experiments has no run function {function!r}")
        text = json.dumps({"args": list(args), "kwargs": kwargs}, sort_keys=True)
        return cls(function, text)

    def __call__(self, **extra: Any) -> experiments.Experiment:
        arguments = json.loads(self.arguments)
        run = getattr(experiments, self.function)
        return run(*arguments["args"], **{**arguments["kwargs"], **extra})


@dataclass(frozen=True)
class Job:
    """A unit of the plan: ``calls`` run in order in one process."""

    name: str  # unique, e.g. "cmsa att_none"
    notebook: str  # the notebook whose tables read it ("05"); its ``full=True`` runs it
    model: str  # registry name, for the cost estimate
    steps: int  # training steps of all its calls, for the cost estimate
    calls: tuple[Call, ...]
    profile: str = "quick"

    @property
    def fingerprint(self) -> str:
        """What decides the job's records: its calls, its budget and the profile's settings."""
        settings = dataclasses.asdict(experiments.get_profile(self.profile, self.model))
        text = json.dumps([[c.function, c.arguments] for c in self.calls] +
                          [self.steps, settings], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def cost(self) -> float:
        """Estimated seconds on one of two busy cores (a reference job: 10)."""
        return self.steps * STEP_SECONDS.get(self.model, 0.2) or 10.0

    def with_seed(self, seed: int = SECOND_SEED) -> Job:
        """The same job trained again with another seed for the batch order and dropout (data
        and initial weights unchanged), recorded as ``<variant>-seed<k>``."""
        calls = []
        for call in self.calls:
            arguments = json.loads(call.arguments)
            kwargs = arguments["kwargs"]
            if call.function == "run_experiment":  # no suffix: the variant names the run
                kwargs["variant"] = kwargs.get("variant", "base") + f"-seed{seed}"
            else:
                kwargs["suffix"] = kwargs.get("suffix", "") + f"-seed{seed}"
            kwargs["train_overrides"] = {**(kwargs.get("train_overrides") or {}), "seed": seed}
            kwargs.pop("examples", None)
            calls.append(Call.of(call.function, *arguments["args"], **kwargs))
        return dataclasses.replace(self, name=f"{self.name} seed {seed}", calls=tuple(calls))


def doubled(job: Job) -> Job:
    """``job``'s first call trained twice as long, recorded as ``<variant>-2x``: whether its
    budget was long enough (``reports.budget``: the run should reach 90% of this one)."""
    call = job.calls[0]
    arguments = json.loads(call.arguments)
    kwargs = arguments["kwargs"]
    kwargs.pop("examples", None)
    profile = kwargs.get("profile", "quick")
    if call.function == "run_experiment":
        kwargs["variant"] = kwargs.get("variant", "base") + DOUBLE_SUFFIX
        steps = experiments.get_profile(profile).train.max_steps
        kwargs["train_overrides"] = {**kwargs.get("train_overrides", {}), "max_steps": 2 * steps}
    elif call.function == "run_dmn":
        kwargs["suffix"] = DOUBLE_SUFFIX
        kwargs["stage_steps"] = [2 * s for s in experiments.DMN_STAGE_STEPS[profile]]
    elif call.function == "run_ris":
        kwargs["suffix"] = DOUBLE_SUFFIX
        kwargs["steps"] = 2 * experiments.RIS_STEPS[profile]
        kwargs["curriculum_steps"] = 2 * experiments.RIS_CURRICULUM_STEPS[profile]
    else:
        kwargs["suffix"] = DOUBLE_SUFFIX
        steps = experiments.recipe_steps(job.model, profile=profile)
        kwargs["train_overrides"] = {**kwargs.get("train_overrides", {}), "max_steps": 2 * steps}
    return dataclasses.replace(job, name=f"{job.name} x2", steps=2 * job.steps // len(job.calls),
                               calls=(Call.of(call.function, *arguments["args"], **kwargs),))


def budget_jobs(profile: str = "quick") -> list[Job]:
    """Each system's full model (and RIS's curriculum run) trained twice as long: the check of
    its budget, measured once per system (``benchmarks/budget_check.py``)."""
    names = {f"{m} {v.partition('+')[0]}" for m, v in experiments.LEADERBOARD.values()}
    names.add("ris all-curriculum")
    return [doubled(j) for j in plan_jobs(profile, minilm=False) if j.name in names]


def plan_jobs(profile: str = "quick", *, notebooks: Sequence[str] | None = None,
              dataset: str = "shapes", root: str | None = None,
              minilm: bool | None = None) -> list[Job]:
    """Every job of the main job (``notebooks``: only theirs, e.g. ``["05"]``).

    On ShapeRef each system's full model is trained in the three expression styles (the
    leaderboard, notebook 09) and every ablation row in ``refshape``, evaluated on val, testA
    and testB; the full models keep the masks of ``experiments.LEADERBOARD_EXAMPLES``. On a
    REFER dataset the ablations run on its splits and the leaderboard is left out.
    ``minilm``: include M3Att's MiniLM row (default: when MiniLM is installed).
    """
    from refseg_lib.models import cmsa, dmn, mcn

    shapes = dataset == "shapes"
    splits = SHAPES_SPLITS if shapes else (("val", "testA", "testB") if dataset in (
        "refcoco", "refcoco+") else ("val", "test"))
    common = dict(profile=profile, eval_splits=list(splits), progress=False)
    if not shapes:
        common.update(dataset=dataset, root=root)
    if minilm is None:
        minilm = _minilm_installed()
    full = {"only_vm": "base", "lstm_cnn": "base", "dmn": "base", "cmsa": "base",
            "mcn": "cem", "m3att": "lfr"}
    styles = experiments.LEADERBOARD_STYLES if shapes else ("refshape",)
    jobs: list[Job] = []

    def add(notebook: str, model: str, name: str, *calls: Call, runs: int = 1) -> None:
        steps = runs * experiments.recipe_steps(model, profile=profile)
        jobs.append(Job(f"{model} {name}", notebook, model, steps, calls, profile))

    def style_of(style: str) -> dict:
        return {"style": style} if shapes else {}

    def shown(model: str, variant: str, style: str) -> dict:
        keep = shapes and style == "refshape" and variant == full[model]
        return {"examples": list(experiments.LEADERBOARD_EXAMPLES)} if keep else {}

    for style in styles:
        suffix = "" if style == "refshape" else f" {style}"
        notebook = "00b" if style == "refshape" else "09"
        for model in ("only_vm", "lstm_cnn"):
            add(notebook, model, "base" + suffix,
                Call.of("run_experiment", model, **common, **style_of(style),
                        **shown(model, "base", style)))
    add("01", "lstm_cnn", "sru", Call.of("run_experiment", "lstm_cnn", variant="sru",
                                         model_config={"rnn": "sru", "rnn_layers": 2},
                                         **common))
    runs = {"dmn": [v for v in dmn.VARIANTS if v != "no_skip"], "cmsa": list(cmsa.VARIANTS),
            "mcn": list(mcn.VARIANTS),
            "m3att": [v for v in experiments.M3ATT_VARIANTS if minilm or "minilm" not in v]}
    notebook_of = {"dmn": "02", "cmsa": "05", "mcn": "06b", "m3att": "07"}
    for model, variants in runs.items():
        function = f"run_{model}"
        for variant in variants:
            calls = [Call.of(function, variant, **common, **shown(model, variant, "refshape"))]
            if model == "dmn" and variant == "base":  # no_skip shares base's first stage
                calls.append(Call.of(function, "no_skip", **common))
            add(notebook_of[model], model, variant, *calls, runs=len(calls))
        for style in styles[1:]:
            notebook = "05" if (model, style) == ("cmsa", "refshape+") else "09"
            add(notebook, model, f"{full[model]} {style}",
                Call.of(function, full[model], **common, style=style,
                        **({"analysis": None} if model == "m3att" else {})))
    for task, curriculum in (("all", False), ("all", True), ("plural", True)):
        if task == "plural" and not shapes:
            continue  # plural expressions need ShapeRef's symbolic scenes
        add("08", "ris", f"{task}{'-curriculum' if curriculum else ''}",
            Call.of("run_ris", task, curriculum=curriculum,
                    **{**common, "eval_splits": list(splits if shapes else ("val",))}))
    if shapes:  # the floors and the ceiling every table shows (reference.py)
        for style in styles:
            jobs.append(Job(f"reference {style}", "00", "reference", 0,
                            (Call.of("run_reference", style=style, profile=profile,
                                     eval_splits=list(splits)),), profile))
    if notebooks is not None:
        jobs = [j for j in jobs if j.notebook in set(notebooks)]
    return jobs


def _minilm_installed() -> bool:
    from refseg_lib.nn.text_encoders import minilm_directory

    try:
        minilm_directory()
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# What is done: reports/plan.json
# ------------------------------------------------------------------------------------------


def manifest_path() -> Path:
    return reports_dir() / "plan.json"


def read_manifest(path: Path | None = None) -> dict[str, dict]:
    """Job name -> {"fingerprint", "records" (file names under reports/runs/), "seconds",
    "notebook", "model", "steps"} of every job done."""
    path = path or manifest_path()
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it to retrain every "
                         "job of the plan") from error


def is_done(job: Job, manifest: dict[str, dict]) -> bool:
    """The job ran with the same fingerprint and every record it wrote is still there."""
    entry = manifest.get(job.name)
    runs = reports_dir() / "runs"
    return bool(entry and entry["fingerprint"] == job.fingerprint and entry["records"] and
                all((runs / name).is_file() for name in entry["records"]))


def _write_manifest(manifest: dict[str, dict]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    atomic_write(manifest_path(), lambda f: f.write(text.encode("utf-8")))


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------


def _source(job: Job) -> str:
    found = sorted(notebooks_dir().glob(f"{job.notebook}_*.ipynb"))
    return f"notebooks/{found[0].name}" if found else "python -m refseg_lib reproduce"


def _run_job(job: Job, threads: int) -> tuple[str, list[str], float]:
    """Run ``job``'s calls in this process on ``threads`` threads; its record file names."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    records: list[str] = []
    try:
        for call in job.calls:
            records += [p.name for p in _records_of(call(source=_source(job)))]
    finally:
        torch.set_num_threads(before)
    return job.name, records, time.perf_counter() - start


def _records_of(done: Any) -> list[Path]:
    """The record paths a run function wrote: an Experiment's, both of DMN's stages', or
    ``run_reference``'s list."""
    if isinstance(done, experiments.Experiment):
        return list(done.records)
    if isinstance(done, tuple):
        return [p for stage in done for p in stage.records]
    return [Path(p) for p in done]


def trained(name: str, profile: str = "quick", **options: Any) -> Any:
    """What the plan's job ``name`` returns (an ``Experiment``; DMN's two stages), its model
    trained: the job runs first if it is not recorded, then its first call resumes its final
    checkpoint and evaluates again without writing records (what a notebook shows beside the
    tables). ``options`` go to ``plan_jobs`` (``dataset``, ``root``)."""
    jobs = {j.name: j for j in plan_jobs(profile, **options)}
    if name not in jobs:
        raise ValueError(f"no job {name!r} in the {profile} plan; jobs: {', '.join(jobs)}")
    run_plan([jobs[name]], n_jobs=1, progress=False)
    return jobs[name].calls[0](write_records=False)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_plan(jobs: Iterable[Job], *, n_jobs: int | None = None, force: bool = False,
             progress: bool = True, desc: str = "runs") -> dict[str, dict]:
    """Run the jobs not yet done (all with ``force``), ``n_jobs`` at a time (default: the
    available cores), longest first, under one progress bar; returns the manifest. A job that
    fails does not stop the others; their errors are raised together at the end."""
    jobs = list(jobs)
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("two jobs of the plan share a name")
    manifest = read_manifest()
    todo = sorted((j for j in jobs if force or not is_done(j, manifest)),
                  key=lambda j: -j.cost)
    if not todo:
        if progress:
            print(f"[plan] all {len(jobs)} jobs are recorded; nothing to train")
        return manifest
    cores = available_cores()
    n_jobs = max(1, min(n_jobs or cores, len(todo)))
    threads = max(1, cores // n_jobs)
    failures: dict[str, BaseException] = {}
    bar = tqdm(total=sum(j.cost for j in todo), disable=not progress, desc=desc,
               unit="s", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
               " {postfix}")
    running: dict[futures.Future, Job] = {}
    done = 0

    def record(name: str, records: list[str], seconds: float) -> None:
        job = next(j for j in todo if j.name == name)
        manifest[name] = {"fingerprint": job.fingerprint, "records": sorted(records),
                          "seconds": round(seconds, 1), "notebook": job.notebook,
                          "model": job.model, "steps": job.steps}
        _write_manifest(manifest)

    def show() -> None:
        bar.set_postfix_str(f"{done}/{len(todo)} jobs; running: "
                            + ", ".join(j.name for j in running.values()), refresh=True)

    with bar:
        if n_jobs == 1:  # in this process: a notebook's full=True, or --jobs 1
            for job in todo:
                running = {None: job}
                show()
                try:
                    record(*_run_job(job, threads))
                except Exception as error:  # noqa: BLE001 - reported with the others below
                    failures[job.name] = error
                done += 1
                bar.update(job.cost)  # floats: rounded costs summed past the total
        else:
            context = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(n_jobs, mp_context=context) as pool:
                pending = list(todo)
                while pending or running:
                    while pending and len(running) < n_jobs:
                        job = pending.pop(0)
                        running[pool.submit(_run_job, job, threads)] = job
                    show()
                    finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                    for future in finished:
                        job = running.pop(future)
                        try:
                            record(*future.result())
                        except Exception as error:  # noqa: BLE001
                            failures[job.name] = error
                        done += 1
                        bar.update(job.cost)  # floats: rounded costs summed past the total
        show()
    if failures:
        details = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in failures.items())
        raise RuntimeError(f"{len(failures)} of {len(todo)} jobs failed ({details})")
    return manifest


def second_seed_jobs(jobs: Sequence[Job], manifest: dict[str, dict]) -> list[Job]:
    """The jobs to train again with a second seed: those whose records a close claim reads
    (``claims.close_calls``: a lead under one point measured with one seed)."""
    from refseg_lib.records import load_run_records
    from refseg_lib.reports.claims import close_calls

    wanted = close_calls(load_run_records())  # {(model, variant, style)}
    by_name = {j.name: j for j in jobs}
    chosen = []
    for name, entry in manifest.items():
        if name not in by_name:
            continue
        written = {tuple(r.split("__")[:3]) for r in entry["records"]}
        if any((m, v, f"shapes-{s}") in written for m, v, s in wanted):
            chosen.append(by_name[name].with_seed())
    return chosen


def run_main_job(profile: str = "quick", *, n_jobs: int | None = None, force: bool = False,
                 progress: bool = True) -> dict[str, dict]:
    """Every job of ``plan_jobs(profile)``, then the second seeds the close claims need."""
    jobs = plan_jobs(profile)
    manifest = run_plan(jobs, n_jobs=n_jobs, force=force, progress=progress)
    second = second_seed_jobs(jobs, manifest)
    if second:
        manifest = run_plan(second, n_jobs=n_jobs, force=force, progress=progress,
                            desc="second seeds")
    return manifest
