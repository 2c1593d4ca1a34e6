"""loyaltysim: agent-based simulation of customer loyalty, loyalty programmes and win-back, on Mesa.

The public face (imported on first use, so that ``import loyaltysim`` and the command line stay fast):

* :class:`LoyaltyMarket` - the Mesa model (build, ``step``, ``run``, inspect, continue);
* :func:`load_scenario` - read and validate a scenario file;
* :func:`simulate` - one run: a scenario and a seed in, tables and a summary out;
* :func:`load_experiment` and :func:`run_sweep` - an experiment file's design, run with replications.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from loyaltysim.version import __version__

_PUBLIC = {
    "LoyaltyMarket": "loyaltysim.model.market",
    "load_scenario": "loyaltysim.scenario",
    "simulate": "loyaltysim.experiments.run",
    "load_experiment": "loyaltysim.experiments.design",
    "run_sweep": "loyaltysim.experiments.sweep",
}
__all__ = ["LoyaltyMarket", "__version__", "load_experiment", "load_scenario", "run_sweep", "simulate"]

if TYPE_CHECKING:
    from loyaltysim.experiments.design import load_experiment
    from loyaltysim.experiments.run import simulate
    from loyaltysim.experiments.sweep import run_sweep
    from loyaltysim.model.market import LoyaltyMarket
    from loyaltysim.scenario import load_scenario


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'loyaltysim' has no attribute {name!r}")
