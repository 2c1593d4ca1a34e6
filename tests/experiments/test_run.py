"""Tests of one simulation run at library level: determinism, a pinned regression, summary consistency and
what :func:`execute_run` leaves behind when a run fails."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from pandas.testing import assert_frame_equal

from loyaltysim.experiments import run as run_module
from loyaltysim.experiments import rundirs
from loyaltysim.experiments.run import execute_run, simulate
from loyaltysim.experiments.storage import Registry, StorageError, read_run_dir, run_dir_for, run_dir_problem
from loyaltysim.measures.tables import TABLES, tabulate
from loyaltysim.model import LoyaltyMarket
from loyaltysim.scenario import ScenarioError, scenario_from_dict
from loyaltysim.units import DAYS


@pytest.fixture(scope="module")
def scenario(make_scenario):
    return make_scenario(market__customers__population=300, time__horizon="20 weeks", time__warmup="4 weeks")


def tiny(make_scenario, population: int = 100, weeks: int = 8):
    return make_scenario(market__customers__population=population, time__horizon=f"{weeks} weeks",
                         time__warmup="2 weeks")


@pytest.fixture(scope="module")
def result(scenario):
    return simulate(scenario, seed=11)


# ------------------------------------------------------------------------------------------ determinism


def test_tables_are_the_four_documented_ones(result):
    assert tuple(result.tables) == TABLES == ("firms", "market", "defections", "surveys", "customers")
    assert result.seed_entropy == 11 and result.spawn_key == ()


def test_same_seed_gives_identical_tables_and_summary(scenario, result):
    again = simulate(scenario, seed=11)
    for name in TABLES:
        assert_frame_equal(again.tables[name], result.tables[name], check_exact=True)
    assert again.summary == result.summary


def test_different_spawn_key_gives_a_different_run(scenario, result):
    child = simulate(scenario, seed=11, spawn_key=(1,))
    assert child.spawn_key == (1,)
    assert child.summary != result.summary
    assert not child.tables["firms"].equals(result.tables["firms"])
    assert not child.tables["defections"].equals(result.tables["defections"])


def test_a_model_run_to_a_step_inspected_and_continued_gives_the_same_run(scenario, result):
    """The research API: simulate(keep_model=True) hands back the model; stepping a model part way, reading its
    arrays and running it on gives the same tables as one uninterrupted run."""
    kept = simulate(scenario, seed=11, keep_model=True)
    assert kept.model is not None and kept.model.steps == scenario.steps()
    assert simulate(scenario, seed=11).model is None
    model = LoyaltyMarket(scenario, seed=np.random.SeedSequence(11))
    model.run(7)
    satisfied = (model.customers.current >= 0).sum()  # inspect (read-only) between the two parts
    assert model.steps == 7 and satisfied > 0
    model.run(scenario.steps() - 7)
    tables = tabulate(model)
    for name in TABLES:
        assert_frame_equal(tables[name], result.tables[name], check_exact=True)


def test_different_seed_gives_a_different_run(scenario, result):
    other = simulate(scenario, seed=12)
    assert other.summary != result.summary
    assert not other.tables["firms"].equals(result.tables["firms"])


# ------------------------------------------------------------------------------------------ regression

# A tiny, fully specified market (independent of experiments/scenarios/, which may be edited freely).
REGRESSION_TOML = """
name = "regression"
[time]
step = "week"
horizon = "30 weeks"
warmup = "6 weeks"
[market.customers]
population = 200
[[market.attributes]]
name = "coverage"
kano = "must_be"
[[market.attributes]]
name = "speed"
kano = "one_dimensional"
[[market.attributes]]
name = "perks"
kano = "attractive"
importance = { mean = 0.5, sd = 0.3, min = 0.0 }
[[market.firms]]
name = "Focal"
price = 30.0
unit_cost = 18.0
attributes = { coverage = 0.7, speed = 0.6, perks = 0.3 }
recovery_cost = 5.0
marketing_spend = "20000 per month"
fixed_cost = "10000 per week"
acquisition_cost = 60.0
[[market.firms]]
name = "Rival A"
price = 28.0
unit_cost = 17.0
attributes = { coverage = 0.7, speed = 0.55, perks = 0.3 }
reliability = 0.97
recovery = 0.4
[[market.firms]]
name = "Rival B"
price = 32.0
unit_cost = 19.0
attributes = { coverage = 0.75, speed = 0.65, perks = 0.3 }
recovery = 0.6
[[market.events]]
kind = "price_change"
at = "20 weeks"
firm = "Rival A"
price = 26.0
[policy]
firm = "Focal"
"""


# Exact outcomes of REGRESSION_TOML with seed 7. They change only on purpose: when a change to the model, its
# defaults or its random streams is meant to change results, update them in a commit whose message says why.
PINNED = {
    "focal_customers_last": 61,
    "defections_total": 49,
    "defections_reported": 39,
    "survey_answers": 67,
    "revenue_total": "190563.12014558056",
    "mean_satisfaction_last": "-0.012656206325931074",
    "focal_annual_churn": "0.5639133593679049",
}


def test_regression_pinned_numbers():
    """A tiny seeded run reproduces the pinned numbers exactly (see PINNED)."""
    s = scenario_from_dict(tomllib.loads(REGRESSION_TOML), source="regression")
    assert s.steps() == 30 and s.warmup_steps() == 6
    r = simulate(s, seed=7)
    firms, market, dep, surveys = (r.tables[t] for t in TABLES[:4])
    last = firms[firms["step"] == 30].set_index("firm")

    assert int(last.loc["Focal", "customers"]) == PINNED["focal_customers_last"]
    assert len(dep) == PINNED["defections_total"]
    assert r.summary["market"]["defections"] == PINNED["defections_reported"]
    assert len(surveys) == PINNED["survey_answers"]
    assert repr(float(firms["revenue"].sum())) == PINNED["revenue_total"]
    assert repr(float(market["mean_satisfaction"].iloc[-1])) == PINNED["mean_satisfaction_last"]
    focal = next(f for f in r.summary["firms"] if f["focal"])
    assert repr(focal["annual_churn"]) == PINNED["focal_annual_churn"]



# ------------------------------------------------------------------------------------------ consistency


def test_annual_churn_is_reported_defections_per_customer_year(scenario, result):
    warm, steps = scenario.warmup_steps(), scenario.steps()
    years = (steps - warm) * DAYS["week"] / DAYS["year"]
    firms, dep = result.tables["firms"], result.tables["defections"]
    reported = firms[firms["step"] > warm]
    assert sorted(reported["step"].unique()) == list(range(warm + 1, steps + 1))
    by_firm = {f["firm"]: f for f in result.summary["firms"]}
    assert list(by_firm) == [f.name for f in scenario.market.firms]
    for name, f in by_firm.items():
        n_def = int(((dep["firm"] == name) & (dep["step"] > warm)).sum())
        mean_customers = reported.loc[reported["firm"] == name, "customers"].mean()
        assert f["annual_churn"] == pytest.approx(n_def / mean_customers / years, rel=1e-12)
    # the warm-up's defections are excluded, and there were some
    assert result.summary["market"]["defections"] == int((dep["step"] > warm).sum()) < len(dep)


def test_defection_log_matches_the_firm_time_series(result):
    firms, dep = result.tables["firms"], result.tables["defections"]
    assert len(dep) > 0
    counted = dep.groupby(["step", "firm"]).size()
    series = firms.set_index(["step", "firm"])["defections"]
    aligned = counted.reindex(series.index, fill_value=0)
    assert (aligned.to_numpy() == series.to_numpy()).all()
    assert set(dep["firm"]) <= set(firms["firm"])
    assert dep["destination"].isin([*firms["firm"].unique(), None]).all()


def test_shares_sum_to_one_at_every_step(scenario, result):
    firms = result.tables["firms"]
    assert len(firms) == scenario.steps() * len(scenario.market.firms)
    totals = firms.groupby("step")["share"].sum()
    assert len(totals) == scenario.steps()
    np.testing.assert_allclose(totals.to_numpy(), 1.0, rtol=0, atol=1e-12)
    customers = firms.groupby("step")["customers"].sum()
    market = result.tables["market"].set_index("step")
    assert (customers == market["with_a_firm"]).all()


def test_summary_matches_the_tables(scenario, result):
    warm = scenario.warmup_steps()
    firms = result.tables["firms"]
    last = firms[firms["step"] == scenario.steps()].set_index("firm")
    reported = firms[firms["step"] > warm]
    causes = result.summary["market"]["defection_causes"]
    assert sum(causes.values()) == result.summary["market"]["defections"]
    for f in result.summary["firms"]:
        assert f["customers_end"] == last.loc[f["firm"], "customers"]
        assert f["share_end"] == pytest.approx(last.loc[f["firm"], "share"])
        own = reported[reported["firm"] == f["firm"]]
        assert f["revenue"] == pytest.approx(own["revenue"].sum())
        assert f["profit"] == pytest.approx(own["profit"].sum())
    assert [f["focal"] for f in result.summary["firms"]] == [n == scenario.policy.firm
                                                             for n in (f.name for f in scenario.market.firms)]
    assert json.loads(json.dumps(result.summary, allow_nan=False)) == result.summary  # strict JSON


def test_surveys_only_on_survey_steps(scenario, result):
    surveys = result.tables["surveys"]
    every = scenario.market.survey.every.steps("week")
    assert len(surveys) > 0
    assert (surveys["step"] % every == 0).all()
    assert surveys["score"].between(1, 5).all() and surveys["recommend"].between(0, 10).all()


@pytest.mark.parametrize("steps", [1, 3, 4])
def test_steps_override_must_exceed_the_warmup(scenario, steps):
    assert scenario.warmup_steps() == 4
    with pytest.raises(ScenarioError) as err:
        scenario.with_overrides(steps=steps)
    assert err.value.source == "--steps"
    assert f"{steps} steps leave nothing after the warm-up of 4 steps" in str(err.value)
    assert scenario.with_overrides(steps=5).steps() == 5


# ------------------------------------------------------------------------------------------ execute_run


def _leftovers(out: Path) -> list[str]:
    runs = out / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


def test_execute_run_is_idempotent(tmp_path, make_scenario):
    s = tiny(make_scenario, population=150, weeks=12)
    db = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    first = execute_run(s, seed=5, out_root=tmp_path, db_url=db)
    second = execute_run(s, seed=5, out_root=tmp_path, db_url=db)
    assert not first.reused and second.reused
    assert second.key == first.key and second.run_dir == first.run_dir == run_dir_for(tmp_path, first.key)
    assert second.summary == first.summary
    assert _leftovers(tmp_path) == [first.key[:16]]
    manifest, tables = read_run_dir(first.run_dir)
    assert manifest["scenario"] == s.to_dict() and set(tables) == set(TABLES)
    with Registry(db) as reg:
        rows = reg.runs()
    assert [(r.key, r.status) for r in rows] == [(first.key, "done")]
    forced = execute_run(s, seed=5, out_root=tmp_path, db_url=db, force=True)
    assert not forced.reused and forced.key == first.key
    assert _leftovers(tmp_path) == [first.key[:16]]


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "delete", "manifest"])
def test_a_damaged_stored_run_is_detected_and_run_again(tmp_path, make_scenario, damage):
    s = tiny(make_scenario, population=150, weeks=12)
    db = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    first = execute_run(s, seed=5, out_root=tmp_path, db_url=db)
    manifest = json.loads((first.run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["table_sha256"]) == set(TABLES)
    assert run_dir_problem(first.run_dir) is None
    pristine = {t: (first.run_dir / f"{t}.parquet").read_bytes() for t in TABLES}
    if damage == "flip":
        _flip_a_byte(first.run_dir / "customers.parquet")
        says = "customers.parquet does not match the SHA-256"
    elif damage == "delete":
        (first.run_dir / "surveys.parquet").unlink()
        says = "surveys.parquet is missing"
    else:
        (first.run_dir / "manifest.json").write_text("{", encoding="utf-8")
        says = "manifest.json cannot be read"
    assert says in run_dir_problem(first.run_dir)
    again = execute_run(s, seed=5, out_root=tmp_path, db_url=db)
    assert not again.reused and says in again.damaged and again.summary == first.summary
    assert run_dir_problem(again.run_dir) is None
    assert {t: (again.run_dir / f"{t}.parquet").read_bytes() for t in TABLES} == pristine  # deterministic
    assert execute_run(s, seed=5, out_root=tmp_path, db_url=db).reused


@pytest.mark.parametrize("error", [RuntimeError("model blew up"), KeyboardInterrupt()])
def test_failed_simulation_leaves_no_run_dir_and_a_failed_row(tmp_path, monkeypatch, make_scenario, error):
    s = tiny(make_scenario)
    db = f"sqlite:///{tmp_path / 'registry.sqlite'}"

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(run_module, "simulate", broken)
    with pytest.raises(type(error)):
        execute_run(s, seed=1, out_root=tmp_path, db_url=db)
    assert _leftovers(tmp_path) == []
    with Registry(db) as reg:
        (row,) = reg.runs()
    assert row.status == "failed" and row.error.startswith(type(error).__name__)
    assert row.finished_at is not None

    monkeypatch.undo()  # the same run then succeeds and replaces the failed row
    done = execute_run(s, seed=1, out_root=tmp_path, db_url=db)
    assert not done.reused and done.key == row.key
    with Registry(db) as reg:
        assert [(r.key, r.status, r.error) for r in reg.runs()] == [(row.key, "done", None)]
    assert _leftovers(tmp_path) == [row.key[:16]]


def test_failure_while_writing_tables_leaves_no_partial_run_dir(tmp_path, monkeypatch, make_scenario):
    s = tiny(make_scenario)
    db = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    real = rundirs._write_table
    written = []

    def flaky(frame, path, labels=None):
        if written:  # the first table is written, then the disk "fills up"
            raise OSError(28, "No space left on device", str(path))
        written.append(path)
        return real(frame, path, labels)

    monkeypatch.setattr(rundirs, "_write_table", flaky)
    with pytest.raises(StorageError, match="No space left on device"):
        execute_run(s, seed=1, out_root=tmp_path, db_url=db)
    assert written and _leftovers(tmp_path) == []
    with Registry(db) as reg:
        (row,) = reg.runs()
    assert row.status == "failed" and "No space left on device" in row.error
