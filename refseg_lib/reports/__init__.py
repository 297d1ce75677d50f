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
  "overall IoU", ``mean_iou`` beside "mean IoU" (``refseg_lib.paper_numbers``), and of the
  same benchmark (a REFER record's dataset and split scheme, ``paper_row``; ShapeRef's style
  beside the benchmark it imitates); a paper that does not report it leaves an empty cell.
- No number of ours stands beside a paper's without its scale: every table's notes say how
  many expressions each run evaluated and how many steps it trained, and name the runs
  trained below the recipe's budget ("short"); tables beside the papers carry both per row.
- Data keep full precision; numbers are rounded only when a table is written.
- Several records of one run (same model, variant, dataset, style, split and profile): the
  newest by ``created`` wins.
- Rows and columns are sorted: splits in the order train, val, testA, testB, testC, test;
  everything else alphabetically, unless an explicit order is given.
- A record whose model, dataset, benchmark, split or profile the library does not know
  (``unknown_records``) is listed in the catalogue all the same, and named in its notes, in the
  index and in a ``RecordWarning`` of ``build_reports``: never left out in silence.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no backend to choose and
no global state, so they work headless (Agg) and display in a notebook as a cell's value.

New reports register a builder with ``@register_report("name")``; ``build_reports`` runs them
all and writes the index ``reports/README.md``.

Where each thing lives:

- ``tables``: records -> tables (metric names, the newest record of each run and its scale,
  ``with_scale``: expressions evaluated, steps against the recipe's budget; benchmarks and the
  papers' benchmark each is set beside, ``paper_row``; what the library knows, ``known_keys``,
  ``unknown_records``; ``results_table``, ``beside_paper`` with ``PaperRef``, ``versus_table``);
- ``writing``: tables and figures -> files, atomically (``write_table``, ``bar_plot``,
  ``heatmap``, ``save_figure``, provenance, scale and unknown-record notes), the registry
  (``register_report``, ``build_reports``) and the index;
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
    SCALE,
    SHAPES_ANALOGUES,
    ablation_runs,
    benchmark_label,
    benchmark_name,
    paper_dataset,
    paper_row,
    record_scheme,
    scale_cells,
    scale_table,
    short_cell,
    whole_budget,
    with_scale,
    UNKNOWN_KINDS,
    known_keys,
    unknown_records,
)
from refseg_lib.reports.writing import (
    REPORT_BUILDERS,
    ReportBuilder,
    bar_plot,
    benchmark_note,
    build_reports,
    curves_plot,
    flat_table,
    heatmap,
    provenance_notes,
    register_report,
    save_figure,
    scale_notes,
    unknown_notes,
    write_index,
    write_model_tables,
    write_table,
)
from refseg_lib.reports.baselines import (
    BASELINE_METRICS,
    BASELINE_MODELS,
    baselines_report,
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
from refseg_lib.reports.catalogue import CATALOGUE_METRICS, runs_report, runs_table
# isort: on

__all__ = [
    "BASELINE_METRICS", "BASELINE_MODELS", "CATALOGUE_METRICS", "CLAIMS", "CMSA_TABLE_2_RUNS",
    "CMSA_TABLE_3_RUNS", "CMSA_VERSUS_RUNS", "COST", "CSV_FLOAT_FORMAT", "Claim", "DMN_METRICS",
    "DMN_TABLE_1_RUNS", "FIGURE_DPI", "JUSTIFIED", "M3ATT_ABLATION_RUNS", "M3ATT_MAIN_ROW",
    "M3ATT_PROBES", "M3ATT_VERSUS_RUNS", "MCN_TABLE_1_RUNS", "MCN_TABLE_2_RUNS", "MCN_TABLE_3_RUNS",
    "MCN_THRESHOLD_SUFFIX", "MCN_VERSUS_RUNS", "MD_FLOAT_FORMAT", "METRICS", "MIN_TAG_SAMPLES",
    "MISSING", "PAPER_ROWS", "PROVENANCE_KEYS", "PaperRef", "REFERENCE_ROWS", "REFERENCE_SYSTEMS",
    "REPORT_BUILDERS", "RIS_FRACTIONS", "RIS_METRICS", "RIS_RUNS", "RUN_KEYS", "ReportBuilder",
    "SCALE", "SHAPES_ANALOGUES", "SPLIT_ORDER", "SYSTEMS", "Side", "TAGS", "UNKNOWN_KINDS",
    "VERDICTS", "WEAK_BELOW",
    "ablation_runs", "bar_plot", "baselines_report", "benchmark_label", "benchmark_name",
    "benchmark_note", "beside_paper", "budget_report", "budget_table", "build_reports",
    "claims_ledger", "claims_report", "cmsa_report", "cmsa_tables", "curves_plot", "dmn_report",
    "drop_constant_levels", "flat_table", "heatmap", "judge", "known_keys", "latest_records",
    "leaderboard_report", "leaderboard_runs", "leaderboard_tables", "m3att_report", "m3att_tables",
    "mcn_report", "mcn_tables", "paper_dataset", "paper_metric", "paper_row", "phenomena_figure",
    "provenance_notes", "ranker", "readme_section", "record_scheme", "register_report",
    "require_columns", "results_table", "ris_report", "ris_tables", "runs_report", "runs_table",
    "save_figure", "scale_cells", "scale_notes", "scale_table", "short_cell", "sort_key",
    "sort_table", "unknown_notes", "unknown_records", "versus_table", "whole_budget",
    "with_reference_rows", "with_scale",
    "write_index", "write_model_tables", "write_table",
]
