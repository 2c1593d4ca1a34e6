"""The ``loyaltysim`` command with every run a sweep's workers start logged, one run key a line, to the file named by
``$RUN_LOG``: to count how often each run is computed when two sweeps share an output folder.

Start it as ``python -c "import run_counter; run_counter.main()" sweep ...``: the workers import this module by its
name to find the function they are given.
"""

import os
import sys

from loyaltysim.experiments import sweep

_run_task = sweep.run_task


def counted_run_task(task: sweep.Task) -> dict:
    with open(os.environ["RUN_LOG"], "a", encoding="utf-8") as log:  # one short append: whole lines
        log.write(f"{task.key}\n")
    return _run_task(task)


def main() -> None:
    sweep.run_task = counted_run_task
    from loyaltysim.cli import main as cli_main

    sys.argv = ["loyaltysim", *sys.argv[1:]]
    cli_main()
