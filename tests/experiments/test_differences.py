"""How one market differs from another: the list of settings is exactly what was changed."""

from pathlib import Path

from cli_process import finish, start
from loyaltysim import load_scenario
from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.differences import common_differences, differences, experiment_differences

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"


def test_a_scenario_differs_in_exactly_the_settings_changed():
    base = load_scenario(BASELINE)
    assert differences(base, base) == []
    other = base.with_changes({"market.customers.switching_cost": 0.9, "market.firms[1].price": 26.0,
                               "time.horizon": "200 weeks", "name": "renamed"})
    found = {d.path: (d.base, d.other) for d in differences(base, other)}
    assert found == {"market.customers.switching_cost": (0.5, 0.9), "market.firms[1].price": (28.0, 26.0),
                     "time.horizon": ("312 weeks", "200 weeks")}  # the name is not a setting
    assert [d.label for d in differences(base, other) if d.path == "market.firms[1].price"] == [
        "market.firms[1].price (Rival A)"]


def test_firms_are_matched_by_name_so_a_removed_firm_is_one_difference():
    base = load_scenario(BASELINE)
    data = base.to_dict()
    data["market"]["firms"] = [f for f in data["market"]["firms"] if f["name"] != "Rival A"]
    data["market"]["firms"][1]["price"] = 33.0  # Rival B, now second
    from loyaltysim.scenario import scenario_from_dict

    other = scenario_from_dict(data)
    found = [(d.label, d.base, d.other) for d in differences(base, other)]
    assert found == [("market.firms[1].price (Rival B)", 32.0, 33.0),
                     ("market.firms[1] (Rival A)", "'Rival A'", "(removed)")]


def test_each_design_point_differs_by_its_factors_and_the_experiments_overrides():
    experiment = load_experiment(ROOT / "tests" / "data" / "tiny_experiment.toml")
    by_point = experiment_differences(load_scenario(BASELINE), experiment)
    assert list(by_point) == ["price=30, market=competitive", "price=30, market=hostage",
                              "price=34, market=competitive", "price=34, market=hostage"]
    shared = {d.path for d in common_differences(by_point)}
    assert shared == {"time.horizon", "time.warmup", "market.customers.population"}
    hostage = {d.path: d.other for d in by_point["price=34, market=hostage"]}
    assert hostage["policy.price"] == 34.0 and hostage["market.customers.switching_cost"] == 3.0
    assert hostage["market.customers.offer_attention"] == 0.1
    assert "policy.price" not in {d.path for d in by_point["price=30, market=competitive"]}  # 30 is the baseline's


def test_the_command_lists_the_differences(tmp_path):
    proc = finish(start("diff", BASELINE, ROOT / "tests" / "data" / "tiny_experiment.toml", cwd=tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "market.customers.population" in proc.stdout and "price=34, market=hostage: besides those" in proc.stdout
    proc = finish(start("diff", BASELINE, ROOT / "tests" / "data" / "tiny_experiment.toml", "--markdown", cwd=tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "| `market.customers.population` | 10000 | " in proc.stdout and "| run |  |" in proc.stdout
    assert ("| `market.customers.offer_attention` | psychology | price=30, market=hostage; price=34, market=hostage |"
            in proc.stdout)
    proc = finish(start("diff", BASELINE, tmp_path / "missing.toml", cwd=tmp_path))
    assert proc.returncode == 2 and "missing.toml" in proc.stderr and "Traceback" not in proc.stderr


def test_a_sampled_design_names_the_factors_and_arms_that_vary_a_setting(tmp_path):
    """In a sampled design every point has other values: the arms table names the sampled factor (with its bounds)
    or the arm that varies each setting instead of listing every point."""
    from loyaltysim.experiments.differences import markdown_rows

    (tmp_path / "sampled.toml").write_text(f'''
schema_version = 1
name = "sampled"
scenario = "{BASELINE.as_posix()}"
replications = 1
root_seed = 1
outcomes = ["focal.share_end"]
[design]
kind = "sobol"
seed = 3
samples = 4
[[factors]]
name = "rival_price"
paths = ["market.firms[1].price", "market.firms[2].price"]
bounds = [26.0, 34.0]
[[factors]]
name = "strategy"
path = "policy.price"
values = [28.0, 32.0]
''')
    experiment = load_experiment(tmp_path / "sampled.toml")
    shared, arms = markdown_rows(load_scenario(BASELINE), experiment)
    assert shared == []
    assert sorted(arms) == [("`market.firms[1].price (Rival A)`", "structure", "sampled: rival_price 26 to 34"),
                            ("`market.firms[2].price (Rival B)`", "structure", "sampled: rival_price 26 to 34"),
                            ("`policy.price`", "policy", "arm: strategy (28.0, 32.0)")]
