"""Run records -> tables beside the papers' numbers -> Markdown, CSV and PNG under ``reports/``.

Reports are a pure function of the run records:
``build_reports(records)`` rewrites every report from a DataFrame of records, one row per
record with its metrics flattened into columns (what ``refseg_lib.records.load_run_records``
returns), and the same records always give the same bytes: no timestamps, fixed float
formats, PNGs saved without the software version.

Conventions, chosen once for every report:

- Our metrics are fractions in [0, 1] (``refseg_lib.metrics``); the papers print percentages.
  Where the two stand side by side (``beside_paper``) both are shown in percent, and the
  column headers say "(%)". Tables of ours alone keep fractions.
- A paper number is only ever set beside ours of the same metric: ``overall_iou`` beside
  "overall IoU", ``mean_iou`` beside "mean IoU" (``refseg_lib.paper_numbers``); a paper that
  does not report our metric leaves an empty cell.
- Data keep full precision; numbers are rounded only when a table is written.
- Several records of one run (same model, variant, dataset, style, split and profile): the
  newest by ``created`` wins.
- Rows and columns are sorted: splits in the order train, val, testA, testB, test; everything
  else alphabetically, unless an explicit order is given.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no backend to choose and
no global state, so they work headless (Agg) and display in a notebook as a cell's value.

New reports register a builder with ``@register_report("name")``; ``build_reports`` runs them
all and writes the index ``reports/README.md``.

Where each thing lives:

- ``tables``: records -> tables (metric names, the newest record of each run, ``results_table``,
  ``beside_paper`` with ``PaperRef``, ``versus_table``);
- ``writing``: tables and figures -> files (``write_table``, ``bar_plot``, ``heatmap``,
  ``save_figure``, provenance notes), the registry (``register_report``, ``build_reports``) and
  the index;
- one module per paper's report: ``baselines`` (Only VM, LSTM-CNN), ``dmn``, ``cmsa``, ``mcn``,
  ``m3att``, ``ris``;
- ``comparison``: notebook 09's leaderboard (every system in one harness, by phenomenon);
  ``claims``: the claims ledger, ``reports/CLAIMS.md``; ``budget``: each system's budget
  beside a run twice as long.

Importing this package registers every report, in the order above; its public names are
importable from ``refseg_lib.reports``.
"""

# The import order is the order in which build_reports writes the reports.
# isort: off
from refseg_lib.reports.tables import (
    CSV_FLOAT_FORMAT,
    FIGURE_DPI,
    MD_FLOAT_FORMAT,
    MISSING,
    PROVENANCE_KEYS,
    RUN_KEYS,
    SPLIT_ORDER,
    PaperRef,
    beside_paper,
    drop_constant_levels,
    latest_records,
    paper_metric,
    ranker,
    require_columns,
    results_table,
    sort_key,
    sort_table,
    versus_table,
    with_reference_rows,
    REFERENCE_ROWS,
)
from refseg_lib.reports.writing import (
    REPORT_BUILDERS,
    ReportBuilder,
    bar_plot,
    build_reports,
    curves_plot,
    flat_table,
    heatmap,
    provenance_notes,
    register_report,
    save_figure,
    write_index,
    write_model_tables,
    write_table,
)
from refseg_lib.reports.baselines import (
    BASELINE_METRICS,
    BASELINE_MODELS,
    baselines_report,
    benchmark_label,
)
from refseg_lib.reports.dmn import (
    DMN_METRICS,
    DMN_TABLE_1_RUNS,
    dmn_report,
)
from refseg_lib.reports.cmsa import (
    CMSA_TABLE_2_RUNS,
    CMSA_TABLE_3_RUNS,
    CMSA_VERSUS_RUNS,
    cmsa_report,
    cmsa_tables,
)
from refseg_lib.reports.mcn import (
    MCN_TABLE_1_RUNS,
    MCN_TABLE_2_RUNS,
    MCN_TABLE_3_RUNS,
    MCN_THRESHOLD_SUFFIX,
    MCN_VERSUS_RUNS,
    mcn_report,
    mcn_tables,
)
from refseg_lib.reports.m3att import (
    M3ATT_ABLATION_RUNS,
    M3ATT_MAIN_ROW,
    M3ATT_PROBES,
    M3ATT_VERSUS_RUNS,
    m3att_report,
    m3att_tables,
)
from refseg_lib.reports.ris import (
    RIS_FRACTIONS,
    RIS_METRICS,
    RIS_RUNS,
    ris_report,
    ris_tables,
)
from refseg_lib.reports.claims import (
    CLAIMS,
    VERDICTS,
    WEAK_BELOW,
    Claim,
    Side,
    claims_ledger,
    claims_report,
    judge,
)
from refseg_lib.reports.comparison import (
    COST,
    METRICS,
    MIN_TAG_SAMPLES,
    PAPER_ROWS,
    REFERENCE_SYSTEMS,
    SYSTEMS,
    TAGS,
    leaderboard_report,
    leaderboard_runs,
    leaderboard_tables,
    phenomena_figure,
    readme_section,
)
from refseg_lib.reports.budget import JUSTIFIED, budget_report, budget_table
# isort: on

__all__ = [
    "BASELINE_METRICS", "BASELINE_MODELS", "CLAIMS", "CMSA_TABLE_2_RUNS", "CMSA_TABLE_3_RUNS",
    "CMSA_VERSUS_RUNS", "COST", "CSV_FLOAT_FORMAT", "Claim", "DMN_METRICS", "DMN_TABLE_1_RUNS",
    "FIGURE_DPI", "JUSTIFIED", "M3ATT_ABLATION_RUNS", "M3ATT_MAIN_ROW", "M3ATT_PROBES",
    "M3ATT_VERSUS_RUNS", "MCN_TABLE_1_RUNS", "MCN_TABLE_2_RUNS", "MCN_TABLE_3_RUNS",
    "MCN_THRESHOLD_SUFFIX", "MCN_VERSUS_RUNS", "MD_FLOAT_FORMAT", "METRICS", "MIN_TAG_SAMPLES",
    "MISSING", "PAPER_ROWS", "PROVENANCE_KEYS", "PaperRef", "REFERENCE_ROWS", "REFERENCE_SYSTEMS",
    "REPORT_BUILDERS", "RIS_FRACTIONS", "RIS_METRICS", "RIS_RUNS", "RUN_KEYS", "ReportBuilder",
    "SPLIT_ORDER", "SYSTEMS", "Side", "TAGS", "VERDICTS", "WEAK_BELOW", "bar_plot",
    "baselines_report", "benchmark_label", "beside_paper", "budget_report", "budget_table",
    "build_reports", "claims_ledger", "claims_report", "cmsa_report", "cmsa_tables", "curves_plot",
    "dmn_report", "drop_constant_levels", "flat_table", "heatmap", "judge", "latest_records",
    "leaderboard_report", "leaderboard_runs", "leaderboard_tables", "m3att_report", "m3att_tables",
    "mcn_report", "mcn_tables", "paper_metric", "phenomena_figure", "provenance_notes", "ranker",
    "readme_section", "register_report", "require_columns", "results_table", "ris_report",
    "ris_tables", "save_figure", "sort_key", "sort_table", "versus_table", "with_reference_rows",
    "write_index", "write_model_tables", "write_table",
]
