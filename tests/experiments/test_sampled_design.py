"""Tests of sampled designs in experiment files: the [design] table, factors with bounds, reproducible points,
integer rounding, every point's scenario validated up front, and grid experiments as they were."""

from pathlib import Path

import numpy as np
import pytest

from loyaltysim.experiments.design import (
    MAX_RUNS,
    DesignSpec,
    ExperimentError,
    Factor,
    draw_sampling,
    load_experiment,
    scale,
)
from loyaltysim.experiments.storage import code_identity, run_key
from loyaltysim.experiments.sweep import plan

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "experiments" / "scenarios" / "baseline.toml"
TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_experiment.toml"

HEAD = f'''
schema_version = 1
name = "sampled"
scenario = "{BASELINE}"
replications = 2
root_seed = 5
horizon = "20 weeks"
warmup = "4 weeks"
population = 150
outcomes = ["market.annual_churn"]
'''

FACTORS = '''
[[factors]]
name = "switching_cost"
path = "market.customers.switching_cost"
bounds = [0.2, 1.0]

[[factors]]
name = "managers"
path = "market.firms[0].relationship_managers"
bounds = [0, 40]
type = "integer"

[[factors]]
name = "search"
path = "market.customers.search_when_satisfied"
bounds = [2, 8]
unit = "% per month"
'''

DESIGNS = {
    "lhs": 'kind = "lhs"\nseed = 7\nsamples = 10',
    "sobol": 'kind = "sobol"\nseed = 7\nsamples = 8',
    "saltelli": 'kind = "saltelli"\nseed = 7\nsamples = 4',
    "morris": 'kind = "morris"\nseed = 7\ntrajectories = 3',
}


def experiment_file(tmp_path: Path, design: str, factors: str = FACTORS, head: str = HEAD) -> Path:
    path = tmp_path / "experiment.toml"
    path.write_text(head + "\n[design]\n" + design + "\n" + factors, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    return info.value.problems


def one(problems: list[str], *fragments: str) -> str:
    hits = [p for p in problems if all(f in p for f in fragments)]
    assert len(hits) == 1, f"{fragments} in {problems}"
    return hits[0]


# ------------------------------------------------------------------------------------------ the points


@pytest.mark.parametrize(("kind", "points"), [("lhs", 10), ("sobol", 8), ("saltelli", 4 * (3 + 2)),
                                              ("morris", 3 * (3 + 1))])
def test_a_sampled_design_has_its_points_within_the_bounds_with_their_values(tmp_path, kind, points):
    exp = load_experiment(experiment_file(tmp_path, DESIGNS[kind]))
    assert exp.kind == kind and len(exp.design) == points and exp.runs == 2 * points
    assert exp.factors == ["switching_cost", "managers", "search"] and exp.levels == {}
    assert exp.sampling is not None and exp.sampling.unit.shape == (points, 3)
    for i, point in enumerate(exp.design):
        v = point.values
        assert point.index == i and set(v) == {"switching_cost", "managers", "search"}
        assert 0.2 <= v["switching_cost"] <= 1.0 and 2 <= v["search"] <= 8
        assert isinstance(v["managers"], int) and 0 <= v["managers"] <= 40
        customers = point.effective["market"]["customers"]
        assert customers["switching_cost"] == v["switching_cost"]
        rate, unit = customers["search_when_satisfied"].split(" ", 1)  # canonical form: a share per month
        assert float(rate) == pytest.approx(v["search"] / 100, rel=1e-12) and unit == "per month"
        assert point.effective["market"]["firms"][0]["relationship_managers"] == v["managers"]
        assert point.labels == {k: str(x) for k, x in v.items()}  # the values as text, every digit


def test_saltelli_and_morris_sizes_follow_the_factors(tmp_path):
    second = load_experiment(experiment_file(tmp_path, DESIGNS["saltelli"] + "\nsecond_order = true"))
    assert len(second.design) == 4 * (2 * 3 + 2) and second.sampling.second_order
    morris = load_experiment(experiment_file(tmp_path, DESIGNS["morris"] + "\nlevels = 6"))
    assert morris.sampling.levels == 6
    grid_values = {round(u * 5, 9) for u in morris.sampling.unit.ravel()}
    assert grid_values <= {0, 1, 2, 3, 4, 5}  # a grid of 6 levels


@pytest.mark.parametrize("kind", sorted(DESIGNS))
def test_the_same_seed_gives_the_same_points_and_another_seed_others(tmp_path, kind):
    first = load_experiment(experiment_file(tmp_path, DESIGNS[kind]))
    again = load_experiment(experiment_file(tmp_path, DESIGNS[kind]))
    other = load_experiment(experiment_file(tmp_path, DESIGNS[kind].replace("seed = 7", "seed = 8")))
    assert [p.values for p in first.design] == [p.values for p in again.design]
    assert [p.effective for p in first.design] == [p.effective for p in again.design]
    assert [p.values for p in first.design] != [p.values for p in other.design]


def test_integer_factors_give_every_whole_number_in_the_bounds_the_same_chance():
    f = Factor(name="n", path="a.b", bounds=[2, 5], type="integer")
    u = (np.arange(4000) + 0.5) / 4000
    counts = np.bincount([scale(f, x) for x in u])
    assert list(counts[2:]) == [1000] * 4 and counts[:2].sum() == 0
    assert (scale(f, 0.0), scale(f, 1.0)) == (2, 5)  # the bounds themselves, u = 1 included
    assert scale(f, 0.2499) == 2 and scale(f, 0.25) == 3
    x = Factor(name="x", path="a.b", bounds=[0.1, 0.3])
    assert (scale(x, 0.0), scale(x, 1.0)) == (0.1, 0.3)  # exactly the bounds
    lhs = draw_sampling(DesignSpec(kind="lhs", seed=1, samples=40), [f])
    values = [v["n"] for v in lhs.values()]
    assert all(isinstance(v, int) for v in values) and sorted(set(values)) == [2, 3, 4, 5]
    assert np.bincount(values)[2:].tolist() == [10] * 4  # a Latin hypercube: each cell of [0, 1] once


def test_replication_r_of_every_point_runs_on_child_r_and_keys_are_those_of_the_effective_scenarios(tmp_path):
    exp = load_experiment(experiment_file(tmp_path, DESIGNS["morris"]))
    code = code_identity()
    tasks = plan(exp, tmp_path, code)
    assert len(tasks) == exp.runs
    for t in tasks:
        point = exp.design[t.design_index]
        assert t.spawn_key == (t.replication,) and t.seed == exp.root_seed
        assert t.key == run_key(point.effective, exp.root_seed, (t.replication,), code)
        assert t.design == point.labels


# ------------------------------------------------------------------------------------------ grids as they were


def test_a_grid_experiment_is_unchanged_and_kind_grid_may_be_written(tmp_path):
    exp = load_experiment(TINY)
    assert exp.kind == "grid" and exp.sampling is None and all(p.values == {} for p in exp.design)
    text = TINY.read_text(encoding="utf-8").replace('scenario = "../../', f'scenario = "{REPO}/')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(text.replace("[[factors]]", '[design]\nkind = "grid"\n\n[[factors]]', 1), encoding="utf-8")
    again = load_experiment(explicit)
    code = code_identity()
    assert [t.key for t in plan(again, tmp_path, code)] == [t.key for t in plan(exp, tmp_path, code)]
    assert [p.labels for p in again.design] == [p.labels for p in exp.design]


# ------------------------------------------------------------------------------------------ problems


def test_design_table_problems_name_the_key_and_what_is_allowed(tmp_path):
    problems = problems_of(experiment_file(tmp_path, 'kind = "saltelli"\nsamples = 100\ntrajectories = 4\n'))
    one(problems, "design.seed:", "required for kind = 'saltelli'", "same seed gives the same points")
    one(problems, "design.samples:", "100 is not a power of 2", "64 or 128")
    one(problems, "design.trajectories:", "not used by kind = 'saltelli'", "['seed', 'samples', 'second_order']")
    assert len(problems) == 3, problems
    problems = problems_of(experiment_file(tmp_path, 'kind = "latin"\nseed = 1\n'))
    one(problems, "design.kind:", "'grid', 'lhs', 'sobol', 'saltelli' or 'morris'")
    problems = problems_of(experiment_file(tmp_path, 'kind = "morris"\nseed = 1\ntrajectories = 2\nlevels = 5\n'
                                                     "samples = 8\n"))
    one(problems, "design.levels:", "even number of levels", "got 5")
    one(problems, "design.samples:", "not used by kind = 'morris'")
    problems = problems_of(experiment_file(tmp_path, 'kind = "lhs"\nseed = -1\nsamples = 1\n'))
    one(problems, "design.seed:", "greater than or equal to 0")
    one(problems, "design.samples:", "greater than or equal to 2")
    problems = problems_of(experiment_file(tmp_path, 'kind = "lhs"\nseed = 1\n'))
    one(problems, "design.samples:", "required for kind = 'lhs'")


def test_factor_problems_of_a_sampled_design(tmp_path):
    factors = '''
[[factors]]
name = "a"
path = "market.customers.switching_cost"
bounds = [1.0, 0.2]

[[factors]]
name = "b"
path = "market.firms[0].relationship_managers"
bounds = [0.5, 10]
type = "integer"

[[factors]]
name = "c"
path = "market.customers.offer_attention"
values = [0.1, 0.2]
bounds = [0.1, 0.2]

[[factors]]
name = "d"
path = "market.customers.offer_attention"
bounds = [0.1, 0.2]
type = "int"

[[factors]]
name = "e"
path = "market.customers.offer_attention"
bounds = [0.1, 0.2, 0.3]

[[factors]]
name = "f"
bounds = [0.1, nan]
'''
    problems = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], factors,
                                           head=HEAD + 'reference = { a = "1" }\nfigures = ["trap"]\n'))
    one(problems, "factors[0].bounds:", "lower bound must be below the upper one, got [1.0, 0.2]")
    one(problems, "factors[1].bounds:", "integer factor takes whole-number bounds, got [0.5, 10]")
    one(problems, "factors[2]:", "either sampled (path or paths, and bounds) or an arm", "give bounds or values, "
        "not both")
    one(problems, "factors[3].type:", "'float' or 'integer'")
    one(problems, "factors[4].bounds:", "at most 2 items")
    one(problems, "factors[5].path:", "required key is missing")
    one(problems, "factors[5].bounds[1]:", "finite number")
    one(problems, "reference:", "no labelled design points")
    one(problems, "figures[0]:", "the figure 'trap' reads the factor(s) ['strategy', 'budget']", "design lacks")


def test_a_grid_factor_takes_no_bounds_and_a_sampled_design_needs_factors(tmp_path):
    grid = '''
[[factors]]
name = "a"
path = "market.customers.switching_cost"
bounds = [0.2, 1.0]
unit = "weeks"
'''
    problems = problems_of(experiment_file(tmp_path, 'kind = "grid"', grid))
    one(problems, "factors[0].bounds:", "only for the factors of a sampled design", "set design.kind")
    one(problems, "factors[0].unit:", "only for the factors of a sampled design")
    one(problems_of(experiment_file(tmp_path, 'kind = "grid"\nseed = 3')), "design.seed:",
        "only for sampled designs", "a grid design runs every combination")
    one(problems_of(experiment_file(tmp_path, DESIGNS["lhs"], "")), "factors:", "needs at least one factor")


def test_bounds_the_scenario_rejects_are_reported_before_anything_runs(tmp_path):
    factors = '''
[[factors]]
name = "attention"
path = "market.customers.offer_attention"
bounds = [0.5, 1.5]

[[factors]]
name = "degree"
path = "market.network.degree"
bounds = [4, 10]
type = "integer"
'''
    problems = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], factors))
    assert one(problems, "factors[0].bounds[1]:") == (
        "factors[0].bounds[1]: Input should be less than or equal to 1 (got 1.5) "
        "(factor attention at its upper bound 1.5)")
    # odd degrees fall inside the bounds: found at the design points, said once with how many hit it
    one(problems, "factors[1].bounds:", "degree must be even", "(design point attention=", "more)")
    assert len(problems) == 2, problems  # the points above attention's upper bound are not listed again


def test_a_path_the_scenario_lacks_is_reported_once(tmp_path):
    factors = '''
[[factors]]
name = "typo"
path = "market.customers.swiching_cost"
bounds = [0, 1]
'''
    (problem,) = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], factors))
    assert problem == ("factors[0].bounds[0]: cannot set 'market.customers.swiching_cost': 'market.customers' has no "
                       "key 'swiching_cost'; did you mean 'switching_cost'? (factor typo at its lower bound 0.0 and "
                       "1 more)")


def test_a_sampled_design_too_large_to_plan_is_rejected_before_drawing(tmp_path):
    problems = problems_of(experiment_file(tmp_path, 'kind = "saltelli"\nseed = 1\nsamples = 1048576'))
    one(problems, "design:", f"{1048576 * 5:,} design point(s) x 2", f"at most {MAX_RUNS:,}")


def test_an_integer_factor_with_a_unit_of_time_is_written_as_a_duration(tmp_path):
    factors = '''
[[factors]]
name = "memory"
path = "market.customers.satisfaction_memory"
bounds = [4, 12]
type = "integer"
unit = "weeks"
'''
    exp = load_experiment(experiment_file(tmp_path, DESIGNS["morris"], factors))
    for p in exp.design:
        assert p.effective["market"]["customers"]["satisfaction_memory"] == f"{p.values['memory']} weeks"


# ------------------------------------------------------------------------------------------ arms and paths

ARMS = '''
[[factors]]
name = "strategy"
path = "policy.investments"
values = [[], [{ attribute = "perks", budget = "1000 per month" }]]
labels = ["none", "perks"]

[[factors]]
name = "switching_cost"
path = "market.customers.switching_cost"
bounds = [0.2, 1.0]

[[factors]]
name = "market"
levels = [{ label = "open", set = {} },
          { label = "wary", set = { "market.customers.offer_attention" = 0.1 } },
          { label = "hostage", set = { "market.customers.switching_cost" = 3.0 } }]

[[factors]]
name = "memory"
paths = ["market.customers.satisfaction_memory", "market.customers.learning_half_life"]
bounds = [4, 12]
unit = "weeks"
'''


def test_arms_are_crossed_with_every_sampled_point_in_order(tmp_path):
    exp = load_experiment(experiment_file(tmp_path, 'kind = "lhs"\nseed = 7\nsamples = 3', ARMS))
    assert exp.factors == ["strategy", "switching_cost", "market", "memory"]
    assert exp.arms == ["strategy", "market"] and exp.sampled_factors == ["switching_cost", "memory"]
    assert exp.levels == {"strategy": ["none", "perks"], "market": ["open", "wary", "hostage"]}
    combinations = [{"strategy": s, "market": m} for s in ("none", "perks") for m in ("open", "wary", "hostage")]
    assert exp.arm_combinations == combinations
    assert exp.sampling.names == ["switching_cost", "memory"] and exp.sampling.unit.shape == (3, 2)
    assert len(exp.design) == 3 * 6 and exp.runs == 2 * 18
    rows = exp.sampling.values()
    for point in exp.design:
        i, j = divmod(point.index, 6)
        assert exp.locate(point.index) == (i, combinations[j])
        assert point.values == rows[i]  # the sampled factors' numbers only
        assert point.labels == {"strategy": combinations[j]["strategy"],
                                "switching_cost": str(rows[i]["switching_cost"]),
                                "market": combinations[j]["market"], "memory": str(rows[i]["memory"])}
        customers = point.effective["market"]["customers"]
        hostage = combinations[j]["market"] == "hostage"  # a later factor's path wins over an earlier one's
        assert customers["switching_cost"] == (3.0 if hostage else rows[i]["switching_cost"])
        assert customers["offer_attention"] == (0.1 if combinations[j]["market"] == "wary"
                                                else exp.base.market.customers.offer_attention)
        investing = point.effective["policy"]["investments"]
        assert (investing[0]["attribute"] == "perks") if combinations[j]["strategy"] == "perks" else investing == []
        assert customers["satisfaction_memory"] == customers["learning_half_life"] == f"{rows[i]['memory']!r} weeks"
    assert exp.arm_points({"strategy": "perks", "market": "wary"}) == [4, 10, 16]
    with pytest.raises(KeyError, match="not a combination"):
        exp.arm_points({"strategy": "perks"})
    # without its arms, the same file samples the same points as before
    alone = load_experiment(experiment_file(tmp_path, 'kind = "lhs"\nseed = 7\nsamples = 3', '''
[[factors]]
name = "switching_cost"
path = "market.customers.switching_cost"
bounds = [0.2, 1.0]

[[factors]]
name = "memory"
paths = ["market.customers.satisfaction_memory", "market.customers.learning_half_life"]
bounds = [4, 12]
unit = "weeks"
'''))
    assert [p.values for p in alone.design] == rows and alone.arms == [] and alone.arm_combinations == [{}]
    assert [alone.locate(i) for i in range(3)] == [(0, {}), (1, {}), (2, {})]


def test_an_arm_runs_like_a_grid_point_with_keys_of_the_effective_scenario(tmp_path):
    exp = load_experiment(experiment_file(tmp_path, 'kind = "morris"\nseed = 7\ntrajectories = 2', ARMS))
    assert len(exp.design) == 2 * 3 * 6
    code = code_identity()
    tasks = plan(exp, tmp_path, code)
    assert len(tasks) == exp.runs  # the hostage arm fixes switching_cost: some points run alike
    for t in tasks[:12]:
        point = exp.design[t.design_index]
        assert t.key == run_key(point.effective, exp.root_seed, (t.replication,), code) and t.design == point.labels


def test_max_runs_counts_the_sampled_points_times_the_arms(tmp_path):
    arm = '''
[[factors]]
name = "arm"
path = "market.customers.offer_attention"
values = [0.1, 0.2, 0.3, 0.4]
'''
    design = 'kind = "saltelli"\nseed = 1\nsamples = 131072'  # 131,072 x 3 = 393,216 points, x 2 replications
    load_small = FACTORS.split("[[factors]]")[1]
    problems = problems_of(experiment_file(tmp_path, design, "[[factors]]" + load_small + arm))
    one(problems, "design:", f"{131072 * 3 * 4:,} design point(s) ({131072 * 3:,} sampled x 4 combination(s) of "
        "the arms) x 2", f"at most {MAX_RUNS:,}")


def test_paths_write_the_sampled_value_to_every_path_and_are_checked_each(tmp_path):
    factors = '''
[[factors]]
name = "price"
paths = ["market.firms[1].price", "market.firms[2].price"]
bounds = [32, 40]
type = "integer"
'''
    exp = load_experiment(experiment_file(tmp_path, DESIGNS["lhs"], factors))
    for p in exp.design:
        firms = p.effective["market"]["firms"]
        assert firms[1]["price"] == firms[2]["price"] == p.values["price"] and firms[0]["price"] != p.values["price"]
    bad = '''
[[factors]]
name = "a"
path = "market.customers.switching_cost"
paths = ["market.customers.switching_cost"]
bounds = [0.2, 1.0]

[[factors]]
name = "b"
paths = ["market.firms[1].price", "market firms", "market.firms[1].price"]
bounds = [20, 40]

[[factors]]
name = "c"
paths = []
bounds = [20, 40]
'''
    problems = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], bad))
    one(problems, "factors[0]:", "either path or paths", "not both")
    one(problems, "factors[1].paths[1]:", "invalid path 'market firms'")
    one(problems, "factors[1].paths:", "each path once", "['market.firms[1].price']")
    one(problems, "factors[2].paths:", "at least 1 item")
    missing = '''
[[factors]]
name = "delay"
paths = ["market.firms[1].reaction.delay", "market.firms[2].reaction.delay"]
bounds = [4, 12]
unit = "weeks"
'''
    (problem,) = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], missing))  # Rival B does not react
    assert problem.startswith("factors[0].paths[1]: cannot set 'market.firms[2].reaction.delay'")
    assert problem.endswith("(factor delay at its lower bound 4.0 and 1 more)")
    high = '''
[[factors]]
name = "share"
paths = ["market.customers.switching_cost", "market.customers.offer_attention"]
bounds = [0.5, 1.5]
'''
    (problem,) = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], high))
    assert problem == ("factors[0].paths[1]: Input should be less than or equal to 1 (got 1.5) (factor share at its "
                       "upper bound 1.5)")


def test_labelled_factors_of_a_sampled_design_are_checked_as_in_a_grid(tmp_path):
    factors = '''
[[factors]]
name = "attention"
path = "market.customers.offer_attention"
values = [0.5, 1.5]

[[factors]]
name = "cost"
path = "market.customers.switching_cost"
bounds = [0.2, 1.0]

[[factors]]
name = "market"
levels = [{ label = "a", set = { "market customers" = 1 } }, { label = "a", set = {} }]

[[factors]]
name = "mixed"
path = "market.customers.offer_attention"
values = [0.1]
unit = "weeks"

[[factors]]
name = "index"
path = "market.customers.offer_attention"
values = [0.1]
'''
    problems = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], factors))
    one(problems, 'factors[2].levels[0].set."market customers":', "invalid path")
    one(problems, "factors[2]:", "level labels must be unique")
    one(problems, "factors[3]:", "either sampled", "give unit or values, not both")
    one(problems, "factors[4].name:", "'index' is reserved for an arm of a sampled design")
    fine = "\n".join(factors.split("\n")[:11])  # the arm with a value the scenario rejects, and the sampled factor
    (problem,) = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], fine))
    assert problem.startswith("factors[0].values[1]: Input should be less than or equal to 1 (got 1.5) (design "
                              "point cost=")
    assert problem.endswith(", attention=1.5 and 9 more)")  # said once for the 10 sampled points it hits


def test_a_sampled_design_takes_findings_and_figures_but_no_reference_and_not_only_arms(tmp_path):
    from loyaltysim.reporting import report

    @report.register_findings("arm_probe")
    def probe(results, experiment):  # pragma: no cover - not checked here
        return []

    try:
        exp = load_experiment(experiment_file(tmp_path, DESIGNS["lhs"], ARMS, head=HEAD + 'findings = ["arm_probe"]\n'))
        assert exp.findings == ["arm_probe"] and exp.figures == []
    finally:
        report.unregister_findings("arm_probe")
    arms_only = '''
[[factors]]
name = "attention"
path = "market.customers.offer_attention"
values = [0.5, 0.7]
'''
    problems = problems_of(experiment_file(tmp_path, DESIGNS["lhs"], arms_only,
                                           head=HEAD + 'reference = { attention = "0.5" }\n'))
    one(problems, "factors:", "needs at least one factor with path and bounds", "are arms")
    one(problems, "reference:", "no labelled design points")
    assert len(problems) == 2, problems
