from .compare import CompareError, CompareResult, RunSummary, compare_runs, summarise_run
from .index import ReportError, check_report_target, write_report
from .notebook_run import NotebookRun
from .sections import NotebookRecord, notebook_records
from .variants import comparison_row, comparison_table

__all__ = [
    "CompareError",
    "CompareResult",
    "NotebookRecord",
    "NotebookRun",
    "ReportError",
    "RunSummary",
    "check_report_target",
    "compare_runs",
    "comparison_row",
    "comparison_table",
    "notebook_records",
    "summarise_run",
    "write_report",
]
