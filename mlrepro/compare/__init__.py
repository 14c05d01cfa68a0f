"""Pure comparisons of run records, with no I/O: what differs between runs, how far curves drift.

`mlrepro diff`, `mlrepro report` and `mlrepro reproduce` read records from a store and
hand plain dicts and lists to these functions, so every rule here is testable
without a store, git or TensorFlow.
"""

from mlrepro.compare.artifacts import compare_artifacts
from mlrepro.compare.curves import (CurveComparison, Deviation, compare_curves, diff_metrics,
                                    summarize_series)
from mlrepro.compare.sections import (compare_manifests, diff_code, diff_data, diff_determinism,
                                      diff_environment, diff_mapping, diff_params,
                                      environment_drift)
from mlrepro.compare.verdict import Verdict, judge

__all__ = ["compare_manifests", "diff_mapping", "diff_params", "diff_code", "diff_data",
           "diff_environment", "diff_determinism", "environment_drift", "compare_curves",
           "summarize_series", "diff_metrics", "CurveComparison", "Deviation",
           "compare_artifacts", "judge", "Verdict"]
