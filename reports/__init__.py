"""Offline HTML reports: a feature store and its clips (`mvfx store report`), run folders (`mvfx report --html`).

A report is a static folder that works from disk with no network: Jinja2 templates (autoescaped) in
``templates/``, one style sheet and one small script for sorting and filtering tables in ``static/``, and PNG
pictures drawn by matplotlib (Agg). Nothing is fetched from anywhere: every file a page uses is in the folder.

    from mvfx.reports import write_store_report
    result = write_store_report(open_store("features.zarr"), "report/")   # report/index.html

Layer: reports reads stores (``mvfx.stores``), media (previews of clips whose file is still there) and
heads (run folders); only the CLI imports it.
"""
from __future__ import annotations

from mvfx.reports.runs_report import write_runs_report
from mvfx.reports.site import ReportResult
from mvfx.reports.store_report import DEFAULT_CLIPS, DEFAULT_FAILED_CLIPS, select_clips, write_store_report

__all__ = [
    "DEFAULT_CLIPS",
    "DEFAULT_FAILED_CLIPS",
    "ReportResult",
    "select_clips",
    "write_runs_report",
    "write_store_report",
]
