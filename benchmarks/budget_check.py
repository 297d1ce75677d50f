"""Were the quick profile's budgets long enough? Train each system's full model (and RIS's
curriculum run) for twice its budget, then rebuild the reports: ``reports/budget_shapes-quick``
sets each run beside its twice-as-long twin (the ``budget`` report; justified at 90%).

    python benchmarks/budget_check.py [--jobs N]

The runs are recorded as ``<variant>-2x`` and skipped when already recorded, as the main job's.
"""

from __future__ import annotations

import argparse

from refseg_lib.cli import report
from refseg_lib.plan import budget_jobs, run_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None, help="runs at once (default: cores)")
    args = parser.parse_args()
    run_plan(budget_jobs("quick"), n_jobs=args.jobs, desc="budgets x2")
    report()


if __name__ == "__main__":
    main()
