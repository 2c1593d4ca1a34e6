"""What a sweep of thousands of runs relies on: a compact plan, look-ups in batches, and a log to follow it by.

The sizes here are small (a few seconds in all); ``benchmarks/sweep_scale.py`` measures 1,000 and 10,000 runs.
"""

import hashlib
import io
import json
import logging
import re
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loyaltysim.cli import app, configure_logging
from loyaltysim.experiments import storage
from loyaltysim.experiments import sweep as sweep_module
from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.storage import Registry, code_identity, run_key, run_key_of_canonical
from loyaltysim.experiments.sweep import plan, run_sweep

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_experiment.toml"
BASELINE = Path(__file__).resolve().parents[2] / "experiments" / "scenarios" / "baseline.toml"
SMALL = {"replications": 1, "population": 60, "horizon": "3 weeks", "warmup": "1 week"}


def threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2)


def sampled_file(tmp_path: Path, samples: int) -> Path:
    path = tmp_path / "sampled.toml"
    path.write_text(f'schema_version = 1\nname = "sampled"\nscenario = "{BASELINE.as_posix()}"\nreplications = 1\n'
                    'root_seed = 3\npopulation = 60\nhorizon = "3 weeks"\nwarmup = "1 week"\n'
                    'outcomes = ["focal.share_end"]\n'
                    f'[design]\nkind = "lhs"\nseed = 5\nsamples = {samples}\n'
                    '[[factors]]\nname = "switching_cost"\npath = "market.customers.switching_cost"\n'
                    'bounds = [0.25, 0.75]\n')
    return path


def test_the_run_key_of_a_canonical_scenario_is_the_run_key_of_its_dict():
    exp = load_experiment(TINY)
    code = code_identity()
    for point in exp.design:
        effective = point.effective
        payload = {"scenario": effective, "seed_entropy": 9, "spawn_key": [2], "version": code.version,
                   "source_digest": code.source_digest, "dependencies": dict(code.dependencies)}
        hashed = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        assert run_key(effective, 9, (2,), code) == hashed
        assert run_key_of_canonical(point.canonical, 9, (2,), code) == hashed


def test_a_design_point_keeps_its_scenario_compact_and_gives_it_back_the_same():
    exp = load_experiment(TINY)
    for point in exp.design:
        assert len(point.packed) < 4000  # compressed canonical JSON, not a validated model
        assert point.scenario.to_dict() == point.effective
        assert point.effective is not point.effective  # a new dict each time: callers may change it
    assert [t.scenario for t in plan(exp, "out")][: len(exp.design)] == [p.effective for p in exp.design]
    again = load_experiment(TINY).design
    assert again == exp.design and again[0] != exp.design[1]  # compared by index, labels, values and scenario


def test_a_sampled_design_and_its_plan_take_a_few_kilobytes_a_run(tmp_path):
    path = sampled_file(tmp_path, 100)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        exp = load_experiment(path)
        tasks = plan(exp, tmp_path)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(tasks) == 100
    assert held / len(tasks) < 8_000, f"{held / len(tasks):.0f} bytes a run"  # a validated scenario is ~40 kB


def test_runs_are_looked_up_by_key_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "KEYS_PER_QUERY", 2)
    exp = load_experiment(TINY, overrides=SMALL)
    out = tmp_path / "out"
    run_sweep(exp, out, f"sqlite:///{out / 'registry.sqlite'}", workers=2, executor_factory=threads,
              stream=io.StringIO())
    keys = [t.key for t in plan(exp, out)]
    with Registry(f"sqlite:///{out / 'registry.sqlite'}") as registry:
        rows = registry.runs_by_key([*keys, "0" * 64, keys[0]])
        statuses = registry.runs_by_key(keys, ["status", "experiment_name"])
        assert sorted(registry.keys("tiny_price", status="done")) == sorted(keys)
    assert set(rows) == set(keys) and all(rows[k].status == "done" for k in keys)
    assert statuses == {k: ("done", "tiny_price") for k in keys}


def test_a_sweep_logs_its_start_progress_and_finish_with_counts(tmp_path, caplog):
    exp = load_experiment(TINY, overrides=SMALL)
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG, logger="loyaltysim")
    run_sweep(exp, out, f"sqlite:///{out / 'registry.sqlite'}", workers=2, executor_factory=threads,
              stream=io.StringIO())
    messages = [r.getMessage() for r in caplog.records if r.name == "loyaltysim.experiments.sweep"]
    assert any(m.startswith("sweep tiny_price: 4 runs (4 design point(s) x 1 replication(s)); 0 already stored")
               and "4 to run" in m for m in messages)
    assert any("workers refuse runs of other code" in m and code_identity().source_digest[:12] in m
               for m in messages)
    assert any(m.startswith("sweep tiny_price: 4 of 4 runs finished (0 failed)") and "runs/s" in m for m in messages)
    assert sum(" submitted (" in m for m in messages) == 4 and sum(m.endswith(" s)") and " stored (" in m
                                                                     for m in messages) == 4
    assert any(m.startswith("sweep tiny_price finished: 4 of 4 runs stored (4 new, 0 already stored), 0 failed")
               for m in messages)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="loyaltysim")
    run_sweep(exp, out, f"sqlite:///{out / 'registry.sqlite'}", workers=2, executor_factory=threads,
              stream=io.StringIO())
    messages = [r.getMessage() for r in caplog.records if r.name == "loyaltysim.experiments.sweep"]
    assert any("4 already stored" in m and "0 to run" in m for m in messages)
    assert any(m.startswith("sweep tiny_price finished: 4 of 4 runs stored (0 new, 4 already stored)")
               for m in messages)
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name.startswith("loyaltysim"))


@pytest.fixture
def restore_package_logger():
    logger = logging.getLogger("loyaltysim")
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)


def test_the_command_logs_at_the_level_asked_and_to_a_log_file(tmp_path, monkeypatch, restore_package_logger):
    monkeypatch.setattr(sweep_module, "default_executor_factory", lambda workers: threads)
    exp_file = tmp_path / "tiny.toml"
    exp_file.write_text(TINY.read_text().replace("../../experiments/", f"{BASELINE.parents[1].as_posix()}/")
                        .replace("replications = 2", "replications = 1").replace('"20 weeks"', '"3 weeks"')
                        .replace('"4 weeks"', '"1 week"').replace("population = 200", "population = 60"))
    log_file = tmp_path / "sweep.log"
    runner = CliRunner()
    result = runner.invoke(app, ["-v", "--log-file", str(log_file), "sweep", str(exp_file), "--out",
                                 str(tmp_path / "out"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "INFO loyaltysim.experiments.sweep: sweep tiny_price: 4 runs" in result.stderr
    assert "finished: 4 of 4 runs stored (4 new" in result.stderr
    assert " submitted (" not in result.stderr  # each run only from -vv
    text = log_file.read_text()
    assert "sweep tiny_price: 4 runs" in text and "finished: 4 of 4 runs stored" in text
    # the default level on stderr is warning (nothing new there); a log file still gets what the sweep does
    quiet_log = tmp_path / "quiet.log"
    result = runner.invoke(app, ["--log-file", str(quiet_log), "sweep", str(exp_file), "--out",
                                 str(tmp_path / "out"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "INFO" not in result.stderr and "finished: 4 of 4 runs stored (0 new, 4 already" in quiet_log.read_text()
    result = runner.invoke(app, ["--log-level", "debug", "sweep", str(exp_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0 and "DEBUG" not in result.stderr  # nothing to run: no run to log
    assert "INFO loyaltysim.experiments.sweep: sweep tiny_price finished" in result.stderr
    result = runner.invoke(app, ["--log-file", str(tmp_path / "no" / "such" / "folder.log"), "validate",
                                 str(exp_file)])
    assert result.exit_code == 2 and "cannot write the log file" in result.stderr


def test_on_a_terminal_with_v_the_progress_is_shown_once_and_a_log_file_still_gets_it(tmp_path, monkeypatch,
                                                                                      restore_package_logger):
    """The progress bar shows the sweep's progress on the terminal; its progress log records go to the log file
    only, and the sweep's other records still to both."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    log_file = tmp_path / "sweep.log"
    configure_logging(verbose=1, log_file=log_file)
    out = tmp_path / "out"
    run_sweep(load_experiment(TINY, overrides=SMALL), out, f"sqlite:///{out / 'registry.sqlite'}", workers=2,
              executor_factory=threads)
    shown = " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", sys.stderr.getvalue()).split())
    assert "4/4" in shown and "finished: 4 of 4 runs stored (4 new" in shown
    assert "runs finished" not in shown
    logged = log_file.read_text()
    assert "sweep tiny_price: 4 of 4 runs finished (0 failed)" in logged and "finished: 4 of 4 runs stored" in logged
