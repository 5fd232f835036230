"""Baseline comparison (`callfleet compare`, a run config's `regression:`): per metric the change
from a baseline run with a bootstrap 95 % interval over calls, judged against an allowed change.

Pure: CallRecord dicts in, compare.json's dict out; reading run directories is orchestration's.
"""

from evaluation.compare.allowance import (
    DEFAULT_ALLOW, Allowance, RegressionConfig, parse_allow, parse_allowance)
from evaluation.compare.core import (
    COMPARE_FILE, RULE, compare_runs, read_compare, regression_brief, regressions, verdict,
    write_compare)
from evaluation.compare.render import html_section, terminal_tables

__all__ = ["COMPARE_FILE", "DEFAULT_ALLOW", "RULE", "Allowance", "RegressionConfig",
           "compare_runs", "html_section", "parse_allow", "parse_allowance", "read_compare",
           "regression_brief", "regressions", "terminal_tables", "verdict", "write_compare"]
