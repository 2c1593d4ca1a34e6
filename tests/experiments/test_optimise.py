"""Policy optimisation: the search finds what a fine grid finds, the risk limit orders candidates, the answer is
re-checked on fresh seeds, runs are stored and replayed, and bad policy files are refused."""

from pathlib import Path

import numpy as np
import pytest

from cli_process import finish, start
from loyaltysim import load_scenario
from loyaltysim.experiments import search as points
from loyaltysim.experiments import sweep as sweeps
from loyaltysim.experiments.optimise import (
    Evaluator,
    PolicyError,
    load_policy,
    loss_probability,
    optimise,
    score,
)
from loyaltysim.reporting.fit import scenario_text

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"

POLICY = """schema_version = 1
name = "price"
scenario = "market.toml"
replications = 2
root_seed = 5
population = 300
horizon = "26 weeks"
warmup = "4 weeks"
objective = "focal.profit"
confirm = 2

[search]
seed = 1
initial = 4
local = 6

[[levers]]
name = "price"
path = "policy.price"
bounds = [20.0, 44.0]
"""


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    """The baseline with price-sensitive customers (3 instead of 1 utility per 100% above the mean price): profit
    against the focal firm's price then has one clear interior peak."""
    folder = tmp_path_factory.mktemp("policy")
    (folder / "market.toml").write_text(scenario_text(BASELINE, {"market.customers.price_sensitivity.mean": 3.0},
                                                      ["# the baseline with price-sensitive customers"]))
    (folder / "price.toml").write_text(POLICY)
    return folder


def test_the_search_finds_the_price_a_fine_grid_finds_and_rechecks_it_on_fresh_seeds(market):
    policy = load_policy(market / "price.toml")
    out = market / "out"
    db = f"sqlite:///{out / 'registry.sqlite'}"
    opt = optimise(policy, out, db, workers=2)
    # the fine grid: every 3 units of price, on the same seeds
    pool = points.Kept(sweeps.default_executor_factory(2)())
    try:
        grid = Evaluator(policy, opt.reference, out, db, 2, lambda: pool, None).run(
            np.linspace(0.0, 1.0, 9)[:, None], "grid")
    finally:
        pool.close()
    means = np.array([e.mean["objective"] for e in grid])
    prices = np.array([e.values["price"] for e in grid])
    assert 22.0 <= prices[means.argmax()] <= 40.0  # an interior peak: the case is a real test
    assert abs(opt.levers["price"] - prices[means.argmax()]) <= 3.0
    assert opt.best.mean["objective"] >= means.max() - 0.002 * abs(means.max())
    summary = opt.summary()
    assert list(summary.index) == ["search", "confirmation"]
    assert summary.loc["confirmation", "replications"] == 2
    # no risk limit: every candidate is admissible, and the score is minus the mean objective
    table = opt.evaluation_table()
    assert table["admissible"].all() and np.allclose(table["score"], -table["objective"])

    # the command replays every run and writes the chosen policy as a scenario
    proc = finish(start("optimise", market / "price.toml", "--out", out, "--workers", "2", cwd=market))
    assert proc.returncode == 0, proc.stderr
    assert "0 runs made" in proc.stdout and f"price = {opt.levers['price']:.4g}" in proc.stdout
    chosen = load_scenario(out / "price" / "policy.toml")
    assert chosen.policy.price == pytest.approx(opt.levers["price"])
    assert chosen.market.customers.price_sensitivity.mean == 3.0
    text = (out / "price" / "optimise.md").read_text()
    assert "## The chosen policy" in text and "| confirmation | 2 |" in text
    assert (out / "price" / "figures" / "search.png").stat().st_size > 10_000


def test_within_the_risk_limit_beats_over_it_whatever_the_means():
    reference = np.array([10.0, 10.0, 10.0, 10.0])
    safe = np.array([10.5, 10.5, 10.5, 10.5])  # never worse than the reference
    bold = np.array([40.0, 40.0, 9.0, 9.0])  # far better on average, worse in half the replications
    assert loss_probability(bold, reference, minimise=False) == 0.5
    assert score(bold, reference, False, None) < score(safe, reference, False, None)
    assert score(safe, reference, False, 0.25) < score(bold, reference, False, 0.25)
    bolder = np.array([40.0, 9.0, 9.0, 9.0])  # over the limit by more: worse still
    assert score(bold, reference, False, 0.25) < score(bolder, reference, False, 0.25)
    assert score(np.array([np.nan, 50.0, 50.0, 50.0]), reference, False, 0.25) > score(bolder, reference, False, 0.25)
    # minimising a cost: worse means higher
    assert loss_probability(np.array([11.0, 9.0]), np.array([10.0, 10.0]), minimise=True) == 0.5
    assert score(np.array([9.0, 9.0]), np.array([10.0, 10.0]), True, 0.0) == -score(
        np.array([9.0, 9.0]), np.array([10.0, 10.0]), False, None)


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace('objective = "focal.profit"', 'objective = "focal.profits"'), "objective: unknown outcome"),
    (lambda t: t.replace('path = "policy.price"', 'path = "policy.prices"'),
     "has no key 'prices'; did you mean 'price'?"),
    (lambda t: t.replace("bounds = [20.0, 44.0]", "bounds = [44.0, 20.0]"), "lower bound must be below"),
    (lambda t: t.replace("local = 6", "local = 6\nstarts = 5"), "search.starts: 5 local searches"),
    (lambda t: t.replace("replications = 2", "replications = 1"), "replications"),
    (lambda t: t + '\n[reference]\n"policy.pricing" = 30.0\n', "reference:"),
])
def test_a_bad_policy_file_is_refused_naming_what_is_wrong(market, tmp_path, edit, expected):
    path = tmp_path / "bad.toml"
    (tmp_path / "market.toml").write_text((market / "market.toml").read_text())
    path.write_text(edit(POLICY))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert expected in str(err.value)


def test_the_command_refuses_a_bad_file_with_one_message_and_writes_nothing(market, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(POLICY.replace('scenario = "market.toml"', 'scenario = "missing.toml"'))
    proc = finish(start("optimise", path, "--out", tmp_path / "out", cwd=tmp_path))
    assert proc.returncode == 2 and "missing.toml" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_shipped_policy_file_is_valid(tmp_path):
    policy = load_policy(ROOT / "experiments" / "policies" / "focal_price.toml")
    assert policy.reference.policy.price == 30.0 and policy.spec.risk_limit == 0.25
    proc = finish(start("validate", ROOT / "experiments" / "policies" / "focal_price.toml", cwd=tmp_path))
    assert proc.returncode == 0 and "valid (policy search 'focal_price', 1 lever(s)" in proc.stdout
