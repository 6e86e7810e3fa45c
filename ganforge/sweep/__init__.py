"""Sweeps: many builds of one base experiment, a results table and plots (``ganforge sweep``/``report``)."""

from .results import collect, write_report
from .runner import SweepRunner
from .spec import Row, Sweep, load_sweep

__all__ = ["Row", "Sweep", "SweepRunner", "collect", "load_sweep", "write_report"]
