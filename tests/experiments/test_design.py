"""Tests of experiment files: the schema, the design grid, the scenario of each design point, and every problem
reported up front with where it is; and every experiment in experiments/ run end to end at a tiny size."""

import io
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loyaltysim.experiments.design import ExperimentError, format_path, load_experiment, parse_path, set_path
from loyaltysim.experiments.sweep import run_sweep
from loyaltysim.reporting import report
from loyaltysim.reporting.report import write_report

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_experiment.toml"
BASELINE = REPO / "experiments" / "scenarios" / "baseline.toml"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


_HEAD = f'''
schema_version = 1
name = "probe"
scenario = "{BASELINE}"
replications = 2
root_seed = 5
horizon = "20 weeks"
warmup = "4 weeks"
population = 150
outcomes = ["focal.share_end"]
'''


def experiment_file(tmp_path: Path, body: str, head: str | None = None) -> Path:
    """An experiment on the baseline scenario with the given factors (and other fields) after a small header."""
    return write(tmp_path / "experiment.toml", (head if head is not None else _HEAD) + body)


def problems_of(path: Path, **kw) -> list[str]:
    with pytest.raises(ExperimentError) as info:
        load_experiment(path, **kw)
    assert str(info.value).startswith(f"{path}: {len(info.value.problems)} problem(s):")
    return info.value.problems


def one(problems: list[str], *fragments: str) -> str:
    """The one problem containing every fragment."""
    hits = [p for p in problems if all(f in p for f in fragments)]
    assert len(hits) == 1, f"{fragments} in {problems}"
    return hits[0]


# ------------------------------------------------------------------------------------------ the design


def test_the_design_is_the_grid_of_the_factors_in_order():
    exp = load_experiment(TINY)
    assert exp.name == "tiny_price" and exp.replications == 2 and exp.root_seed == 20261123
    assert exp.factors == ["price", "market"]
    assert exp.levels == {"price": ["30", "34"], "market": ["competitive", "hostage"]}
    assert [(p.index, p.labels) for p in exp.design] == [
        (0, {"price": "30", "market": "competitive"}),
        (1, {"price": "30", "market": "hostage"}),
        (2, {"price": "34", "market": "competitive"}),
        (3, {"price": "34", "market": "hostage"}),
    ]
    assert exp.runs == 8
    assert exp.reference == {"price": "30"} and exp.risk is True


def test_a_design_point_is_the_base_scenario_with_its_overrides():
    exp = load_experiment(TINY)
    base = exp.base.to_dict()
    hostage_34 = exp.design[3].effective
    # experiment-wide overrides first ...
    assert hostage_34["time"]["horizon"] == "20 weeks" and hostage_34["time"]["warmup"] == "4 weeks"
    assert hostage_34["market"]["customers"]["population"] == 200
    # ... then every path of every factor's level
    assert hostage_34["policy"]["price"] == 34.0
    assert hostage_34["market"]["customers"]["switching_cost"] == 3.0
    assert hostage_34["market"]["customers"]["offer_attention"] == 0.1
    competitive_30 = exp.design[0].effective
    assert competitive_30["market"]["customers"]["switching_cost"] == 0.6
    assert competitive_30["market"]["customers"]["offer_attention"] == base["market"]["customers"]["offer_attention"]
    # nothing else differs from the base
    for point in exp.design:
        eff = dict(point.effective)  # a shallow copy: only top-level keys are replaced
        for key in ("market", "policy", "time"):
            eff[key] = base[key]
        assert eff == base
    assert exp.design[0].scenario.steps() == 20


def test_the_base_scenario_is_relative_to_the_experiment_file(tmp_path):
    (tmp_path / "scenarios").mkdir()
    write(tmp_path / "scenarios" / "trap.toml", BASELINE.read_text(encoding="utf-8"))
    path = experiment_file(tmp_path, "", head='''
name = "relative"
scenario = "scenarios/trap.toml"
replications = 1
root_seed = 0
outcomes = ["market.annual_churn"]
''')
    exp = load_experiment(path)
    assert exp.base.name == "baseline" and exp.path == path.resolve()
    assert exp.spec.schema_version == 1 and exp.description == "" and exp.figures == [] and exp.risk is False


def test_without_factors_there_is_one_design_point_the_base_scenario(tmp_path):
    exp = load_experiment(experiment_file(tmp_path, ""))
    assert len(exp.design) == 1 and exp.design[0].labels == {} and exp.factors == []
    assert exp.design[0].effective["market"]["customers"]["population"] == 150
    assert exp.runs == 2 and exp.reference is None


def test_labels_default_to_the_values_as_text(tmp_path):
    exp = load_experiment(experiment_file(tmp_path, '''
[[factors]]
name = "price"
path = "policy.price"
values = [28, 31.5]

[[factors]]
name = "attention"
path = "market.customers.offer_attention"
values = [0.2, 0.5, 0.8]
'''))
    assert exp.levels == {"price": ["28", "31.5"], "attention": ["0.2", "0.5", "0.8"]}
    assert len(exp.design) == 6
    assert [p.effective["policy"]["price"] for p in exp.design] == [28.0] * 3 + [31.5] * 3
    assert [p.effective["market"]["customers"]["offer_attention"] for p in exp.design] == [0.2, 0.5, 0.8] * 2


def test_a_level_that_sets_nothing_is_the_base_scenario(tmp_path):
    exp = load_experiment(experiment_file(tmp_path, '''
[[factors]]
name = "market"
levels = [
  { label = "base", set = {} },
  { label = "hostage", set = { "market.customers.switching_cost" = 3.0 } },
]
'''))
    assert exp.levels == {"market": ["base", "hostage"]}
    base = load_experiment(experiment_file(tmp_path, "")).design[0].effective
    assert exp.design[0].effective == base and exp.design[1].effective != base


def test_a_value_may_be_a_whole_table_or_list(tmp_path):
    exp = load_experiment(experiment_file(tmp_path, '''
[[factors]]
name = "invest"
path = "policy.investments"
values = [[], [{ attribute = "perks", budget = "50000 per month", start = "4 weeks" }]]
labels = ["none", "perks"]

[[factors]]
name = "reaction"
levels = [
  { label = "passive", set = { "market.firms[1].reaction" = {} } },
  { label = "quick", set = { "market.firms[1].reaction.delay" = "2 weeks" } },
]
'''))
    investments = [p.effective["policy"]["investments"] for p in exp.design]
    assert investments[0] == [] and investments[2][0]["attribute"] == "perks"
    assert investments[2][0]["budget"] == "50000 per month"  # canonical form, defaults filled in
    assert "max_level" in investments[2][0]
    assert exp.design[1].effective["market"]["firms"][1]["reaction"]["delay"] == "2 weeks"


def test_overrides_replace_top_level_fields_before_validation():
    exp = load_experiment(TINY, overrides={"replications": 3, "population": 100, "horizon": "30 weeks",
                                           "warmup": "8 weeks", "outcomes": ["market.annual_churn"]})
    assert exp.replications == 3 and exp.outcomes == ["market.annual_churn"]
    eff = exp.design[0].effective
    assert eff["market"]["customers"]["population"] == 100
    assert (eff["time"]["horizon"], eff["time"]["warmup"]) == ("30 weeks", "8 weeks")
    with pytest.raises(ExperimentError, match="replications"):
        load_experiment(TINY, overrides={"replications": 0})


def test_reference_labels_keep_the_other_factors():
    exp = load_experiment(TINY)
    assert exp.reference_labels({"price": "34", "market": "hostage"}) == {"price": "30", "market": "hostage"}
    assert load_experiment(TINY, overrides={"reference": None, "risk": False}).reference_labels({"price": "34"}) is None
    # a reference value may be written as the number it labels
    exp = load_experiment(TINY, overrides={"reference": {"price": 30}})
    assert exp.reference == {"price": "30"}


# ------------------------------------------------------------------------------------------ paths


def test_paths_parse_into_keys_and_list_indices():
    assert parse_path("policy.investments[0].attribute") == ["policy", "investments", 0, "attribute"]
    assert parse_path("market.firms[12].attributes.perks") == ["market", "firms", 12, "attributes", "perks"]
    assert format_path(["market", "firms", 1, "price"]) == "market.firms[1].price"
    for bad in ("", "a..b", ".a", "a[x]", "a[-1]", "a b", "a.[0]", "a."):
        with pytest.raises(ValueError, match="invalid path"):
            parse_path(bad)


def test_set_path_replaces_only_existing_keys_and_says_what_is_missing():
    data = {"a": {"b": [{"c": 1}], "n": None, "x": 3}}
    set_path(data, "a.b[0].c", {"deep": [1]})
    assert data == {"a": {"b": [{"c": {"deep": [1]}}], "n": None, "x": 3}}
    with pytest.raises(ValueError, match=r"'a.b' has 1 item\(s\), so there is no \[1\]"):
        set_path(data, "a.b[1].c", 0)
    with pytest.raises(ValueError, match="'a' has no key 'y'"):
        set_path(data, "a.y", 0)
    with pytest.raises(ValueError, match="did you mean 'x'"):
        set_path(data, "a.xy", 0)
    with pytest.raises(ValueError, match=r"'a\.n' is not set"):
        set_path(data, "a.n.k", 0)
    with pytest.raises(ValueError, match="not a list"):
        set_path(data, "a.x[0]", 0)
    with pytest.raises(ValueError, match="not a table"):
        set_path(data, "a.x.k", 0)


# ------------------------------------------------------------------------------------------ problems


def test_a_missing_file_a_folder_and_malformed_toml_are_one_problem_each(tmp_path):
    assert problems_of(tmp_path / "nope.toml") == ["file not found"]
    assert problems_of(tmp_path) == ["is a directory, not an experiment file (.toml)"]
    assert problems_of(write(tmp_path / "bad.toml", "name = [\n"))[0].startswith("malformed TOML")


def test_every_problem_of_the_file_is_listed_at_once(tmp_path):
    path = experiment_file(tmp_path, '''
[[factors]]
name = "price"
path = "policy.price"
values = [30.0, 34.0]

[[factors]]
name = "design"
levels = [{ label = "a", set = { "policy.price" = 1.0 } }]

[[factors]]
name = "both"
path = "policy.price"
values = [1.0]
levels = [{ label = "a", set = { "policy.price" = 1.0 } }]

[[factors]]
name = "price"
path = "policy..price"
values = [1, 2]
labels = ["one"]
''', head=f'''
name = "bad name"
scenario = "{BASELINE}"
replications = 0
root_seed = -1
horizon = "20 wekks"
outcomes = ["focal.share_end", "focal.nonsense", "firm[Nobody].share_end", "focal.share_end"]
reference = {{ price = "31", colour = "red" }}
figures = ["no_such_figure"]
risk = true
colour = "blue"
''')
    problems = problems_of(path)
    one(problems, "replications:", "greater than or equal to 1")
    one(problems, "root_seed:", "greater than or equal to 0")
    one(problems, "horizon:", "unknown time unit 'wekks'")
    one(problems, "colour:", "unknown key")
    one(problems, "name:", "'bad name' cannot name the report folder")
    one(problems, "factors[1].name:", "'design' is reserved")
    one(problems, "factors[2]:", "either path and values", "not both")
    one(problems, "factors[3].name:", "must be unique")
    one(problems, "factors[3].path:", "invalid path 'policy..price'")
    one(problems, "factors[3].labels:", "1 label(s) for 2 value(s)")
    one(problems, "reference.price:", "'31' is not a label", "['30.0', '34.0']")
    one(problems, "reference.colour:", "unknown factor 'colour'")
    one(problems, "figures[0]:", "unknown figure 'no_such_figure'")
    one(problems, "outcomes[1]:", "unknown outcome 'focal.nonsense'")
    one(problems, "outcomes[2]:", "unknown firm 'Nobody'")
    one(problems, "outcomes:", "each outcome once", "focal.share_end")
    assert len(problems) == 16, problems


def test_factor_shape_problems(tmp_path):
    problems = problems_of(experiment_file(tmp_path, '''
[[factors]]
name = "nothing"

[[factors]]
name = "empty"
path = "policy.price"
values = []

[[factors]]
name = "twins"
path = "policy.price"
values = [30, 30.0, "30"]

[[factors]]
name = "nolevels"
levels = []

[[factors]]
name = "dup_labels"
levels = [{ label = "a", set = { "policy.price" = 1.0 } }, { label = "a", set = { "policy.price" = 2.0 } }]

[[factors]]
name = "badset"
levels = [{ label = "a", set = { "policy price" = 1.0 } }]
''', head=f'''
name = "shapes"
scenario = "{BASELINE}"
replications = 1
root_seed = 0
outcomes = ["focal.share_end"]
risk = true
'''))
    one(problems, "factors[0].path:", "required key is missing")
    one(problems, "factors[0].values:", "required key is missing")
    one(problems, "factors[1].values:", "at least one value")
    one(problems, "factors[2]:", "labels must be unique", "give labels")
    one(problems, "factors[3].levels:", "at least one level")
    one(problems, "factors[4]:", "labels must be unique")
    one(problems, 'factors[5].levels[0].set."policy price":', "invalid path")
    one(problems, "risk:", "needs a reference")


def test_a_missing_or_invalid_base_scenario_is_reported_with_its_problems(tmp_path):
    path = experiment_file(tmp_path, "", head='''
name = "x"
scenario = "nowhere.toml"
replications = 1
root_seed = 0
outcomes = ["focal.share_end"]
''')
    (problem,) = problems_of(path)
    assert problem == f"scenario: {tmp_path / 'nowhere.toml'}: file not found"
    write(tmp_path / "nowhere.toml", BASELINE.read_text(encoding="utf-8").replace("population = 10000",
                                                                                   "population = -5"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"scenario: {tmp_path / 'nowhere.toml'}: market.customers.population:")


def test_every_design_point_is_validated_up_front_naming_the_factor_path_and_design_point(tmp_path):
    problems = problems_of(experiment_file(tmp_path, '''
[[factors]]
name = "price"
path = "policy.price"
values = [30.0, -34.0]
labels = ["ok", "negative"]

[[factors]]
name = "market"
levels = [
  { label = "competitive", set = { "market.customers.switching_cost" = -0.6 } },
  { label = "typo", set = { "market.customers.swiching_cost" = 3.0 } },
  { label = "no_investment", set = { "policy.investments[0].attribute" = "perks" } },
  { label = "long_warmup", set = { "time.warmup" = "30 weeks" } },
  { label = "bad_list", set = { "policy.investments" = [{ attribute = "perkz", budget = "1 per week" }] } },
  { label = "fine", set = { "market.customers.switching_cost" = 1.0 } },
]
'''))
    assert one(problems, 'factors[1].levels[0].set."market.customers.switching_cost": ') == (
        'factors[1].levels[0].set."market.customers.switching_cost": Input should be greater than or equal to 0 '
        "(got -0.6) (design point price=ok, market=competitive and 1 more)")
    one(problems, 'factors[1].levels[1].set."market.customers.swiching_cost": ',
        "'market.customers' has no key 'swiching_cost'; did you mean 'switching_cost'?",
        "(design point price=ok, market=typo and 1 more)")
    one(problems, 'factors[1].levels[2].set."policy.investments[0].attribute": ',
        "'policy.investments' has 0 item(s), so there is no [0]")
    one(problems, 'horizon and factors[1].levels[3].set."time.warmup": ',
        "time: warmup (30 weeks) must be shorter than horizon (20 weeks)")
    one(problems, 'factors[1].levels[4].set."policy.investments": ', "[0].attribute: unknown attribute 'perkz'")
    assert one(problems, "factors[0].values[1]: ") == (
        "factors[0].values[1]: Input should be greater than 0 (got -34.0) "
        "(design point price=negative, market=competitive and 3 more)")  # the other two fail before
    assert len(problems) == 6, problems


def test_registered_figures_can_be_named(tmp_path):
    path = experiment_file(tmp_path, 'figures = ["probe_figure"]\n')
    one(problems_of(path), "figures[0]:", "unknown figure 'probe_figure'")

    @report.register_figure("probe_figure")
    def probe(results, experiment, folder):  # pragma: no cover - never drawn here
        return folder / "probe.png"

    try:
        assert load_experiment(path).figures == ["probe_figure"]
        with pytest.raises(ValueError, match="already registered"):
            report.register_figure("probe_figure")(lambda results, experiment, folder: folder)
    finally:
        report.unregister_figure("probe_figure")


def test_a_figure_or_finding_whose_factors_the_design_lacks_is_rejected_before_anything_runs(tmp_path):
    """The Jones & Sasser figure on the trap's design would run the whole sweep, then fail at the report."""
    factor = '[[factors]]\nname = "strategy"\npath = "policy.price"\nvalues = [28.0, 30.0]\n'
    path = experiment_file(tmp_path, 'figures = ["jones_sasser", "trap"]\nfindings = ["trap_ablation"]\n' + factor)
    problems = problems_of(path)
    one(problems, "figures[0]:", "'jones_sasser' reads the factor(s) ['market']", "factors: ['strategy']")
    one(problems, "figures[1]:", "'trap' reads the factor(s) ['budget']")
    one(problems, "findings[0]:", "unknown findings 'trap_ablation'")
    campaign = '[[factors]]\nname = "campaign"\npath = "policy.price"\nvalues = [28.0, 30.0]\n'
    outcomes = 'outcomes = ["focal.winback_rate", "focal.npv"]\n'
    ok = experiment_file(tmp_path, 'figures = ["winback"]\n' + campaign,
                         head=_HEAD.replace('outcomes = ["focal.share_end"]\n', outcomes))
    assert load_experiment(ok).figures == ["winback"]  # with the factor and the outcomes it reads, it loads


def test_a_figure_or_finding_whose_outcomes_the_file_does_not_ask_for_is_rejected_before_anything_runs(tmp_path):
    """A check reading an outcome nobody asked for would judge a missing number (a ratio of two missing retentions
    was once infinite, and "ratio >= 3" held whatever the model did)."""
    factor = '[[factors]]\nname = "perturbation"\nlevels = [{ label = "base", set = {} }]\n'
    path = experiment_file(tmp_path, 'findings = ["robustness_jones_sasser"]\n' + factor)
    problems = problems_of(path)
    one(problems, "findings[0]:", "'robustness_jones_sasser' reads the outcome(s) ['market.retention_by_score_4'",
        "add them to outcomes")


@pytest.mark.parametrize(("field", "value", "says"), [
    ("replications", "true", "replications: Input should be a valid integer"),
    ("replications", "10001", "replications: Input should be less than or equal to 10000"),
    ("population", "true", "population: Input should be a valid integer"),
    ("name", '"' + "x" * 101 + '"', "at most 100 letters"),
])
def test_sizes_booleans_and_names_are_checked(tmp_path, field, value, says):
    head = experiment_file(tmp_path, "").read_text(encoding="utf-8")
    head = "\n".join(f"{field} = {value}" if line.startswith(f"{field} =") else line for line in head.splitlines())
    one(problems_of(write(tmp_path / "experiment.toml", head + "\n")), says)


def test_a_design_too_large_to_plan_is_rejected_without_building_it(tmp_path):
    values = ", ".join(str(20.0 + k / 100) for k in range(200))
    factors = "".join(f'[[factors]]\nname = "f{i}"\npath = "policy.price"\nvalues = [{values}]\n' for i in range(3))
    one(problems_of(experiment_file(tmp_path, factors)), "factors:", "8,000,000 design point(s)",
        "at most 1,000,000")


# ------------------------------------------------------------------------------------------ experiments/*.toml

EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))
TINY_SIZE = {"population": 100, "replications": 2, "horizon": "30 weeks", "warmup": "8 weeks"}
TINY_SAMPLES = {"lhs": {"samples": 4}, "sobol": {"samples": 4}, "saltelli": {"samples": 2},
                "morris": {"trajectories": 2}}


def tiny_size(path: Path) -> dict:
    """TINY_SIZE, with a sampled design cut to a few points."""
    design = tomllib.loads(path.read_text(encoding="utf-8")).get("design", {})
    fewer = TINY_SAMPLES.get(design.get("kind", "grid"))
    return {**TINY_SIZE, "design": {**design, **fewer}} if fewer else TINY_SIZE


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_every_experiment_file_runs_end_to_end_at_a_tiny_size(path, tmp_path):
    exp = load_experiment(path, overrides=tiny_size(path))
    db = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    result = run_sweep(exp, tmp_path, db, workers=2, executor_factory=lambda: ThreadPoolExecutor(2),
                       stream=io.StringIO())
    assert not result.failed, result.failed[0].error
    assert result.complete and result.total == len(exp.design) * 2
    written = write_report(exp, tmp_path, db)
    assert written.missing == 0 and (written.folder / "summary.md").is_file()
    for png in written.folder.glob("figures/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
