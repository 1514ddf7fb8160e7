"""disagg-planner: plan LLM inference deployments and decide whether to disaggregate prefill and decode.

The pipeline (docs/DESIGN.md §1-6): specs (:mod:`planner.specs`, :mod:`planner.catalog`) ->
performance model (:mod:`planner.perf`) -> candidate table -> MIP -> frontier/plan -> outputs.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("disagg-planner")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
