"""Tests of scenario files: loading, validation problems (with their field paths) and derived views."""

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from loyaltysim.scenario import (
    AttributeChange,
    LoyaltyScenario,
    PriceChange,
    ScenarioError,
    SwitchingCostChange,
    load_scenario,
    scenario_from_dict,
)
from loyaltysim.units import Duration

BASELINE = Path(__file__).resolve().parents[1] / "experiments" / "scenarios" / "baseline.toml"


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, source="case")
    assert info.value.source == "case"
    assert info.value.problems, "a ScenarioError must name at least one problem"
    return info.value.problems


def only_problem(data: dict) -> str:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    return problems[0]


def edited_baseline(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The baseline file with each (regex, replacement) applied exactly once, written to tmp_path."""
    text = BASELINE.read_text(encoding="utf-8")
    for pattern, replacement in edits:
        text, n = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert n == 1, f"baseline.toml no longer contains {pattern!r}"
    path = tmp_path / "edited.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- the baseline


def test_baseline_loads():
    sc = load_scenario(BASELINE)
    assert isinstance(sc, LoyaltyScenario)
    assert sc.name == "baseline"
    assert sc.market.type == "contractual"
    assert sc.market.customers.population == 10_000
    assert [f.name for f in sc.market.firms] == ["Focal", "Rival A", "Rival B"]
    assert [a.kano for a in sc.market.attributes] == ["must_be", "one_dimensional", "attractive"]
    assert sc.policy.firm == "Focal"
    assert sc.focal_index == 0
    assert (sc.steps(), sc.warmup_steps()) == (312, 156)
    assert sc.time.horizon == Duration(312.0, "week")
    assert sc.market.events == []  # a stationary reference market: its calibration checks three steady years
    assert sc.market.customers.reliability_choice.enabled and sc.market.customers.reference_price.enabled


def test_baseline_accepts_a_path_given_as_text():
    assert load_scenario(str(BASELINE)) == load_scenario(BASELINE)


def test_baseline_round_trips(baseline_data):
    sc = scenario_from_dict(baseline_data)
    assert scenario_from_dict(sc.to_dict()) == sc


def test_defaults_fill_in_left_out_sections(scenario_data):
    data = scenario_data()
    for key in ("network", "survey"):
        del data["market"][key]
    del data["economics"]
    sc = scenario_from_dict(data)
    assert sc.market.network.degree == 8
    assert sc.market.survey.cutpoints == (-0.075, -0.055, -0.03, 0.02)


# ----------------------------------------------------------------------------------- problems and their paths


def test_unknown_key_names_its_path(scenario_data):
    data = scenario_data()
    data["market"]["customers"]["populaton"] = 100
    assert only_problem(data).startswith("market.customers.populaton: unknown key")


def test_unknown_top_level_key(scenario_data):
    data = scenario_data()
    data["seed"] = 3
    assert only_problem(data).startswith("seed: unknown key")


def test_missing_required_key(scenario_data):
    data = scenario_data()
    del data["market"]["firms"][1]["price"]
    assert only_problem(data) == "market.firms[1].price: required key is missing"


@pytest.mark.parametrize("price", [-3.0, 0.0])
def test_non_positive_price(scenario_data, price):
    problem = only_problem(scenario_data(market__firms__0__price=price))
    assert problem.startswith("market.firms[0].price: ")
    assert "greater than 0" in problem


def test_negative_policy_price(scenario_data):
    assert only_problem(scenario_data(policy__price=-1.0)).startswith("policy.price: ")


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("market__firms__1__reliability", 1.5, "market.firms[1].reliability"),
        ("market__firms__2__recovery", -0.1, "market.firms[2].recovery"),
        ("market__firms__0__attributes__speed", 1.2, "market.firms[0].attributes.speed"),
        ("market__network__rewire", 1.01, "market.network.rewire"),
        ("market__survey__sample", 2.0, "market.survey.sample"),
        ("market__customers__marketing_effect", -0.5, "market.customers.marketing_effect"),
        ("market__customers__natural_churn", "150% per year", "market.customers.natural_churn"),
        ("market__firms__1__marketing_reach", "1.2 per month", "market.firms[1].marketing_reach"),
    ],
)
def test_probability_outside_unit_interval(scenario_data, path, value, where):
    assert only_problem(scenario_data(**{path: value})).startswith(f"{where}: ")


@pytest.mark.parametrize(
    ("path", "value", "where", "message"),
    [
        ("time__horizon", "3 fortnights", "time.horizon", "unknown time unit"),
        ("market__customers__satisfaction_memory", "-8 weeks", "market.customers.satisfaction_memory", "negative"),
        ("market__customers__purchase_rate__mean", "1 weekly", "market.customers.purchase_rate.mean", "not a rate"),
        ("market__customers__loss_aversion", 0.5, "market.customers.loss_aversion", "greater than or equal to 1"),
        ("market__customers__population", 0, "market.customers.population", "greater than or equal to 1"),
        ("market__type", "auction", "market.type", "contractual"),
        ("market__survey__cutpoints", [-0.2, -0.3, 0.0, 0.1], "market.survey.cutpoints", "strictly increasing"),
        ("market__customers__price_sensitivity", {"min": 2.0, "max": 1.0}, "market.customers.price_sensitivity",
         "must not exceed"),
    ],
)
def test_field_problems_name_their_path(scenario_data, path, value, where, message):
    problem = only_problem(scenario_data(**{path: value}))
    assert problem.startswith(f"{where}: ")
    assert message in problem


@pytest.mark.parametrize("degree", [7, 3])
def test_odd_network_degree(scenario_data, degree):
    problem = only_problem(scenario_data(market__network__degree=degree))
    assert problem.startswith("market.network.degree: ")
    assert "even" in problem


def test_unknown_policy_firm(scenario_data):
    problem = only_problem(scenario_data(policy__firm="Nobody"))
    assert "policy.firm" in problem
    assert "'Nobody'" in problem
    assert "Focal" in problem  # lists the known firms


@pytest.mark.parametrize(
    "event",
    [
        {"kind": "price_change", "at": "10 weeks", "firm": "Nobody", "price": 20.0},
        {"kind": "attribute_change", "at": "10 weeks", "firm": "Nobody", "attribute": "speed", "level": 0.5},
    ],
)
def test_unknown_firm_in_event(scenario_data, event):
    problem = only_problem(scenario_data(market__events=[event]))
    assert problem.startswith("market.events[0].firm: ")
    assert "unknown firm 'Nobody'" in problem


def test_unknown_attribute_in_event(scenario_data):
    event = {"kind": "attribute_change", "at": "10 weeks", "firm": "Focal", "attribute": "colour", "level": 0.5}
    problem = only_problem(scenario_data(market__events=[event]))
    assert problem.startswith("market")
    assert "unknown attribute 'colour'" in problem


def test_unknown_event_kind(scenario_data):
    problem = only_problem(scenario_data(market__events=[{"kind": "merger", "at": "10 weeks"}]))
    assert problem.startswith("market.events[0]")


def test_event_field_problem_names_the_event(scenario_data):
    event = {"kind": "price_change", "at": "10 weeks", "firm": "Focal", "price": -5.0}
    problem = only_problem(scenario_data(market__events=[{"kind": "switching_cost_change", "at": "1 week",
                                                          "switching_cost": 0.1}, event]))
    assert problem.startswith("market.events[1].price: ")


def test_firm_missing_an_attribute(scenario_data):
    data = scenario_data()
    del data["market"]["firms"][2]["attributes"]["speed"]
    problem = only_problem(data)
    assert problem.startswith("market.firms[2].attributes: ")
    assert "speed" in problem


def test_firm_with_an_unknown_attribute(scenario_data):
    problem = only_problem(scenario_data(market__firms__1__attributes__colour=0.5))
    assert problem.startswith("market.firms[1].attributes: ")
    assert "colour" in problem


def test_duplicate_firm_names(scenario_data):
    problem = only_problem(scenario_data(market__firms__2__name="Focal"))
    assert "firm names must be unique" in problem


@pytest.mark.parametrize(("warmup", "horizon"), [("30 weeks", "30 weeks"), ("40 weeks", "30 weeks"),
                                                 ("12 months", "52 weeks")])
def test_warmup_not_shorter_than_horizon(scenario_data, warmup, horizon):
    problem = only_problem(scenario_data(time__warmup=warmup, time__horizon=horizon))
    assert problem.startswith("time")
    assert "warmup" in problem
    assert "horizon" in problem


def test_warmup_just_shorter_than_horizon_is_fine(make_scenario):
    sc = make_scenario(time__warmup="29 weeks", time__horizon="30 weeks")
    assert (sc.warmup_steps(), sc.steps()) == (29, 30)


@pytest.mark.parametrize(
    ("path", "where"),
    [("market__firms__0__programmes", "market.firms[0].programmes[0]"), ("policy__programmes", "policy.programmes[0]")],
)
def test_an_unknown_programme_kind_names_the_kinds_available(scenario_data, path, where):
    problem = only_problem(scenario_data(**{path: [{"kind": "stamps", "name": "Card"}]}))
    assert problem.startswith(f"{where}: ")
    assert "'stamps'" in problem and all(f"'{k}'" in problem for k in ("points", "tiers", "cashback", "club"))


@pytest.mark.parametrize(
    ("path", "where"),
    [("market__firms__2__campaigns", "market.firms[2].campaigns[0]"),
     ("policy__campaigns", "policy.campaigns[0]")],
)
def test_unknown_campaign_kind_names_the_kinds_available(scenario_data, path, where):
    problem = only_problem(scenario_data(**{path: [{"kind": "points"}]}))
    assert problem.startswith(f"{where}: ")
    assert "'points'" in problem and "'win_back'" in problem and "'retention'" in problem


def test_empty_programme_lists_are_fine(make_scenario):
    sc = make_scenario(policy__programmes=[], policy__campaigns=[])
    assert sc.policy.programmes == []


def test_wrong_schema_version(scenario_data):
    assert only_problem(scenario_data(schema_version=2)).startswith("schema_version: ")


# ----------------------------------------------------------------------------------- every problem at once


def test_two_field_problems_are_listed_together(scenario_data):
    data = scenario_data(market__firms__0__price=-3.0, market__network__degree=7)
    problems = problems_of(data)
    assert len(problems) == 2
    assert any(p.startswith("market.firms[0].price: ") for p in problems)
    assert any(p.startswith("market.network.degree: ") for p in problems)


def test_many_field_problems_are_listed_together(scenario_data):
    data = scenario_data(
        market__firms__1__reliability=1.5,
        market__customers__natural_churn="150% per year",
        time__horizon="3 fortnights",
        policy__programmes=[{"kind": "points", "name": "Card", "earn_rate": 0}],
    )
    data["market"]["survey"]["colour"] = "red"
    paths = sorted(p.split(": ")[0] for p in problems_of(data))
    assert paths == sorted([
        "market.firms[1].reliability", "market.customers.natural_churn", "time.horizon",
        "policy.programmes[0].earn_rate", "market.survey.colour",
    ])


def test_market_consistency_problems_are_all_reported(scenario_data):
    data = scenario_data(market__events=[{"kind": "price_change", "at": "1 week", "firm": "Nobody", "price": 2.0}])
    del data["market"]["firms"][2]["attributes"]["speed"]
    text = "\n".join(problems_of(data))
    assert "'Rival B'" in text
    assert "unknown firm 'Nobody'" in text


def test_problems_in_different_sections_are_listed_together(scenario_data):
    data = scenario_data(time__warmup="40 weeks", policy__firm="Nobody")
    text = "\n".join(problems_of(data))
    assert "warmup" in text
    assert "policy.firm" in text


def test_a_field_error_does_not_hide_a_cross_reference_problem(scenario_data):
    data = scenario_data(market__firms__0__price=-1.0,
                         market__events=[{"kind": "price_change", "at": "2 weeks", "firm": "Nobody", "price": 1.0}])
    problems = problems_of(data)
    assert any(p.startswith("market.firms[0].price: ") for p in problems)
    assert any(p.startswith("market.events[0].firm: ") for p in problems)
    assert len(problems) == 2


def test_error_message_lists_each_problem_on_its_own_line(scenario_data):
    data = scenario_data(market__firms__0__price=-3.0, market__network__degree=7)
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, source="my.toml")
    message = str(info.value)
    assert message.startswith("my.toml: 2 problem(s):")
    for problem in info.value.problems:
        assert f"\n  - {problem}" in message


# ----------------------------------------------------------------------------------- files


def test_file_with_two_errors_lists_both(tmp_path):
    path = edited_baseline(
        tmp_path,
        (r"^price = 30\.0(?=\s+# per unit bought)", "price = -30.0"),
        (r"^degree = 8\b", "degree = 9"),
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.source == str(path)
    assert sorted(p.split(": ")[0] for p in info.value.problems) == ["market.firms[0].price", "market.network.degree"]


def test_file_with_an_unknown_key(tmp_path):
    path = edited_baseline(tmp_path, (r"^population = 10000", "populaton = 10000"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.problems == ["market.customers.populaton: unknown key (not part of the schema; check the "
                                   "spelling)"]


def test_malformed_toml(tmp_path):
    path = edited_baseline(tmp_path, (r"^degree = 8\b", "degree = = 8"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    (problem,) = info.value.problems
    assert problem.startswith("malformed TOML")
    assert info.value.source == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nowhere.toml")
    assert info.value.problems == ["file not found"]
    assert str(tmp_path / "nowhere.toml") in str(info.value)


def test_directory_is_not_a_scenario(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path)
    assert "directory" in info.value.problems[0]


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.problems[0].startswith("cannot read file")


def test_empty_file_lists_the_required_sections(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert sorted(info.value.problems) == sorted(
        f"{key}: required key is missing" for key in ("name", "market", "policy")
    )


# ----------------------------------------------------------------------------------- derived views


def test_effective_firms_apply_the_policy_price_to_the_focal_firm_only(make_scenario):
    sc = make_scenario(policy__price=41.5)
    firms = sc.effective_firms()
    assert [f.price for f in firms] == [41.5, 28.0, 32.0]
    assert [f.price for f in sc.market.firms] == [30.0, 28.0, 32.0]  # the market itself is unchanged
    # everything but the levers is the market's
    for eff, orig in zip(firms, sc.market.firms, strict=True):
        assert eff.model_dump(exclude={"price"}) == orig.model_dump(exclude={"price"})


def test_effective_firms_for_another_focal_firm(make_scenario):
    sc = make_scenario(policy__firm="Rival B", policy__price=20.0)
    assert sc.focal_index == 2
    assert [f.price for f in sc.effective_firms()] == [30.0, 28.0, 20.0]


def test_policy_without_a_price_keeps_the_market_price(scenario_data):
    data = scenario_data()
    del data["policy"]["price"]
    sc = scenario_from_dict(data)
    assert sc.policy.price is None
    assert [f.price for f in sc.effective_firms()] == [30.0, 28.0, 32.0]


def test_events_are_parsed_by_kind(make_scenario):
    sc = make_scenario(market__events=[
        {"kind": "price_change", "at": "10 weeks", "firm": "Rival A", "price": 26.0},
        {"kind": "attribute_change", "at": "3 months", "firm": "Rival B", "attribute": "perks", "level": 0.9},
        {"kind": "switching_cost_change", "at": "20 weeks", "switching_cost": 0.0},
    ])
    kinds = [type(e) for e in sc.market.events]
    assert kinds == [PriceChange, AttributeChange, SwitchingCostChange]
    assert [e.at.steps("week") for e in sc.market.events] == [10, 13, 20]


def test_scenarios_are_immutable(make_scenario):
    sc = make_scenario()
    with pytest.raises(ValidationError, match="frozen"):
        sc.market.customers.population = 3


def test_with_overrides_sets_the_horizon_in_steps(make_scenario):
    sc = make_scenario()
    shorter = sc.with_overrides(steps=12)
    assert shorter.steps() == 12
    assert shorter.warmup_steps() == sc.warmup_steps()
    assert shorter.market == sc.market
    assert sc.with_overrides() == sc


# ------------------------------------------------------------------------------------------ with_changes


def test_with_changes_sets_values_by_path_and_validates_like_a_file(make_scenario):
    base = make_scenario()
    changed = base.with_changes({"market.customers.switching_cost": 2.0, "market.firms[1].price": 27.5})
    assert changed.market.customers.switching_cost == 2.0 and changed.market.firms[1].price == 27.5
    assert base.market.customers.switching_cost != 2.0  # the original is left alone
    assert changed.to_dict() == scenario_from_dict(changed.to_dict()).to_dict()
    with pytest.raises(ScenarioError) as err:  # paths that do not exist: each named, nothing validated yet
        base.with_changes({"market.customers.switching_cot": 1.0, "market.firms[7].price": 1.0})
    problems = err.value.problems
    assert len(problems) == 2
    assert "did you mean 'switching_cost'" in problems[0] and "there is no [7]" in problems[1]
    with pytest.raises(ScenarioError) as err:  # values out of range: rejected as in a file
        base.with_changes({"market.customers.loss_aversion": -1, "market.firms[0].price": 0})
    assert [p.split(":")[0] for p in err.value.problems] == ["market.customers.loss_aversion",
                                                             "market.firms[0].price"]


# ------------------------------------------------------------------------------------------ numbers that cannot be

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("path", "value", "says"), [
    # NaN and infinity, in bounded and in plain fields
    ("market__firms__0__price", INF, "finite number"),
    ("market__firms__0__acquisition_cost", INF, "finite number"),
    ("market__customers__satisfaction_threshold", {"mean": NAN}, "finite number"),
    ("market__customers__delight_level", NAN, "finite number"),
    ("market__network__advocate_level", -INF, "finite number"),
    ("market__customers__basket", {"max": INF}, "finite number"),
    # a boolean is not a number
    ("market__firms__0__price", True, "valid number"),
    ("market__customers__population", True, "valid integer"),
    # durations and rates: finite and bounded
    ("time__horizon", "1e400 weeks", "longer than 10,000 years"),
    ("market__lapse", "20000 years", "longer than 10,000 years"),
    ("market__firms__0__fixed_cost", "1e400 per week", "larger than"),
    # how often something recurs must be longer than 0
    ("market__survey__every", "0 weeks", "longer than 0"),
    ("outputs__panel_every", "0 weeks", "longer than 0"),
    # cross-field order and ranges
    ("market__customers__basket", {"mean": 0.05, "min": 0.1}, "must lie between min"),
    ("market__customers__variety_seeking", {"mean": 0.2, "sd": 0.1, "min": 0.0, "max": 1.5}, "within [0, 1]"),
    ("market__customers__variety_seeking", {"mean": 0.2, "sd": 0.1, "min": None, "max": None}, "within [0, 1]"),
])
def test_numbers_a_model_cannot_use_are_rejected_naming_the_field(scenario_data, path, value, says):
    problem = only_problem(scenario_data(**{path: value}))
    field = path.replace("__0__", "[0].").replace("__", ".")
    assert problem.startswith(field) and says in problem, problem


def test_a_campaign_that_recurs_every_0_weeks_or_looks_back_less_than_forward_is_rejected(scenario_data):
    campaign = {"kind": "win_back", "every": "0 weeks",
                "target": {"lapsed_at_least": "8 weeks", "lapsed_at_most": "4 weeks"}}
    problems = problems_of(scenario_data(policy__campaigns=[campaign]))
    assert any(p.startswith("policy.campaigns[0].every") and "longer than 0" in p for p in problems), problems
    assert any(p.startswith("policy.campaigns[0].target") and "lapsed_at_most" in p for p in problems), problems


# ------------------------------------------------------------------------------------------ files that are not files


@pytest.mark.parametrize("kind", ["fifo", "device", "huge", "nested", "directory", "missing"])
def test_only_a_regular_file_of_sane_size_and_depth_is_read(tmp_path, kind):
    path = tmp_path / "s.toml"
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes to it: reading it would hang
    elif kind == "device":
        path = Path("/dev/zero")  # endless: reading it would fill the memory
    elif kind == "huge":
        path.write_text("# " + "x" * (6 * 2**20) + "\n", encoding="utf-8")
    elif kind == "nested":
        path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    elif kind == "directory":
        path.mkdir()
    says = {"fifo": "is not a regular file", "device": "is not a regular file", "huge": "larger than 5 MiB",
            "nested": "nested too deeply", "directory": "is a directory", "missing": "file not found"}[kind]
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.problems == [err.value.problems[0]] and says in err.value.problems[0]
