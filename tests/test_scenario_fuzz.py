"""Fuzzing the scenario loader with mutants of the shipped scenario files: whatever a file holds, loading it either
gives a scenario or raises ScenarioError listing one-line problems that name a field; nothing else escapes, and
``loyaltysim validate`` exits 0 or 2 without a traceback.

The mutants come from a fixed seed, so a failure is reproduced by running the test again; its message shows the
mutation (file, path, change).
"""

import copy
import json
import math
import random
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli_process import clean_env
from loyaltysim.cli import app
from loyaltysim.scenario import LoyaltyScenario, ScenarioError, load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "scenarios").glob("*.toml"))
MUTANTS = 300
SEED = 20261206

# what a value may become: the edge cases of numbers, the wrong types, and a change of shape
REPLACEMENTS: list[tuple[str, Any]] = [
    ("NaN", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("huge int", 10**30), ("huge float", 1e300),
    ("negative", -1), ("very negative", -1e9), ("zero", 0), ("a string", "oops"), ("empty string", ""),
    ("true", True), ("false", False), ("empty list", []), ("empty table", {}), ("a table", {"x": 1}),
]
# a path is a tuple of keys and list indices from the top of the file
Path_ = tuple[str | int, ...]


def paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key and list element of a parsed file, parents before children."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


def mutate(data: dict, rng: random.Random) -> tuple[dict, str]:
    """A copy of ``data`` with one random change, and what it was."""
    data = copy.deepcopy(data)
    path = rng.choice(paths(data))
    *parents, last = path
    node = data
    for key in parents:
        node = node[key]
    what = rng.choice(["drop", "wrap in a list", "unknown key", *["replace"] * 4])
    if what == "drop":
        del node[last]
    elif what == "wrap in a list":
        node[last] = [node[last]]
    elif what == "unknown key" and isinstance(node[last], dict):
        node[last]["no_such_key"] = 1
    else:
        label, value = rng.choice(REPLACEMENTS)
        node[last] = copy.deepcopy(value)
        what = f"set to {label}"
    return data, f"{'.'.join(map(str, path))}: {what}"


def toml_value(value: Any) -> str:
    """TOML for a value: inline tables and arrays, so that any nesting fits one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(data: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in data.items())


@pytest.fixture(scope="module")
def mutants(tmp_path_factory) -> list[tuple[Path, str]]:
    """The mutant files, each with a description of its mutation."""
    rng = random.Random(SEED)
    originals = {path: tomllib.loads(path.read_text(encoding="utf-8")) for path in SCENARIOS}
    folder = tmp_path_factory.mktemp("mutants")
    made = []
    for i in range(MUTANTS):
        source = rng.choice(SCENARIOS)
        data, what = mutate(originals[source], rng)
        path = folder / f"{i:03d}-{source.stem}.toml"
        path.write_text(to_toml(data), encoding="utf-8")
        assert tomllib.loads(path.read_text(encoding="utf-8")).keys() == data.keys()
        made.append((path, f"{source.name}, {what}"))
    return made


# a problem names the field it is about ("market.firms[0].price: ..."), or the file itself
PROBLEM = re.compile(r"(?:[A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*|<file>): \S.*")


def test_a_shipped_scenario_round_trips_through_the_mutants_toml():
    for path in SCENARIOS:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert tomllib.loads(to_toml(data)) == data


def test_every_mutant_loads_or_raises_scenario_error_naming_a_field(mutants):
    outcomes = {"valid": 0, "invalid": 0}
    wrong = []  # every mutant handled wrongly, so that one run shows them all
    for path, what in mutants:
        try:
            scenario = load_scenario(path)
        except ScenarioError as err:
            outcomes["invalid"] += 1
            bad = [p for p in err.problems if "\n" in p or not PROBLEM.fullmatch(p)]
            if bad or not err.problems or not str(err).startswith(f"{path}: {len(err.problems)} problem(s):"):
                wrong.append(f"{what}: {err.problems!r}")
        except Exception as err:  # the point of the test: nothing else may escape
            wrong.append(f"{what}: {type(err).__name__}: {err}")
        else:
            outcomes["valid"] += 1
            assert isinstance(scenario, LoyaltyScenario)
    assert not wrong, "\n".join(wrong)
    assert outcomes["invalid"] > MUTANTS // 2 and outcomes["valid"] > 0, outcomes  # the mutants are not all alike


def test_validate_exits_0_or_2_on_mutants_without_a_traceback(mutants):
    runner = CliRunner()
    chosen = mutants[:: MUTANTS // 8]
    for path, what in chosen:
        res = runner.invoke(app, ["validate", str(path)])
        assert res.exit_code in (0, 2), f"{what}: {res.output}"
        assert res.exception is None or isinstance(res.exception, SystemExit), what
        assert "Traceback" not in res.output, what
    invalid = next(path for path, _ in chosen if runner.invoke(app, ["validate", str(path)]).exit_code == 2)
    res = subprocess.run([sys.executable, "-m", "loyaltysim.cli", "validate", str(invalid)], capture_output=True,
                         text=True, timeout=60, env=clean_env(), check=False)
    assert res.returncode == 2 and res.stderr.startswith(f"error: {invalid}: ") and "Traceback" not in res.stderr
