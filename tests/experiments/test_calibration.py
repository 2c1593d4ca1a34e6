"""The calibration check: the NBD fit measure against known distributions, the report, the command, and the
shipped baselines against their published targets."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.calibration import (
    CHURN,
    DIRICHLET_POLARISATION,
    DRIFT_CHURN,
    DRIFT_SATISFACTION,
    DRIFT_SHARE,
    SATISFIED_DEFECTORS,
    SCORE_5,
    TOP_BOX,
    TOP_BOX_SHARE,
    calibration_check,
    calibration_report,
    dirichlet_gaps,
    dirichlet_report,
    nbd_gap,
    top_box_cutpoint,
)
from loyaltysim.measures import dirichlet
from loyaltysim.scenario import load_scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[2] / "experiments" / "scenarios"


def test_nbd_gap_is_small_for_nbd_and_poisson_samples():
    rng = np.random.default_rng(11)
    lam = rng.gamma(0.8, 2.0, 50_000)
    assert nbd_gap(rng.poisson(lam)) < 0.01
    assert nbd_gap(rng.poisson(3.0, 50_000)) < 0.01  # variance = mean: the Poisson limit


def test_nbd_gap_is_large_for_a_two_point_population():
    counts = np.r_[np.zeros(5000, int), np.full(5000, 8)]
    assert nbd_gap(counts) > 0.2


def test_top_box_cutpoint_gives_the_share_of_answers_asked_for():
    # everyone exactly at 0 with answer noise 0.01: half answer above 0, a sixth above one standard deviation
    assert abs(top_box_cutpoint(np.zeros(100), 0.01, 0.5)) < 1e-9
    assert abs(top_box_cutpoint(np.zeros(100), 0.01, 0.158655) - 0.01) < 1e-5
    rng = np.random.default_rng(5)
    truth = rng.normal(-0.01, 0.02, 20_000)
    cut = top_box_cutpoint(truth, 0.015)
    answers = truth + 0.015 * rng.standard_normal(truth.size)
    assert abs((answers > cut).mean() - TOP_BOX_SHARE) < 0.01  # simulated answers give the share asked for
    assert np.isnan(top_box_cutpoint(np.array([]), 0.015))


def _small(name: str, population: int) -> dict:
    data = load_scenario(SCENARIOS / name).to_dict()
    data["market"]["customers"]["population"] = population
    return data


def test_report_rows_for_a_contractual_market():
    report = calibration_report(scenario_from_dict(_small("baseline.toml", 500)), [1], window_weeks=4)
    assert list(report["measure"]) == ["annual churn", "share of scores 4-5", "share of scores 5",
                                       "satisfied defectors", "drift of mean satisfaction", "drift of annual churn",
                                       "largest drift of a firm's share"]  # full years after the warm-up
    assert report.loc[0, "target"] == f"{CHURN.low:g}-{CHURN.high:g}"
    assert report["ok"].map(lambda x: x in (True, False)).all()


def test_report_rows_for_a_repertoire_market():
    report = calibration_report(scenario_from_dict(_small("baseline_repertoire.toml", 500)), [1], window_weeks=4)
    measures = list(report["measure"])
    assert "NBD fit gap, category" in measures and "NBD fit gap, Focal" in measures
    churn = report[report["measure"] == "annual churn"].iloc[0]
    assert churn["ok"] is None  # lapse-defined churn is reported without a target


def test_a_repertoire_run_gets_the_dirichlet_benchmark_and_a_contractual_one_does_not():
    data = _small("baseline_repertoire.toml", 800)
    data["time"].update(horizon="40 weeks", warmup="10 weeks")
    check = calibration_check(scenario_from_dict(data), [1, 2], window_weeks=4, dirichlet_weeks=26)
    assert check.dirichlet_steps == 26
    table = check.dirichlet
    assert list(table["brand"]) == ["Focal", "Rival A", "Rival B", "(category)"]
    brands = table.iloc[:3]
    for m in ("share", "penetration", "frequency", "scr"):
        assert brands[m].between(0, np.inf).all() and brands[f"{m}_dirichlet"].between(0, np.inf).all(), m
    np.testing.assert_allclose(brands["share"].sum(), 1.0)
    np.testing.assert_allclose(brands["share"], brands["share_dirichlet"])  # the fit takes the observed shares
    assert (brands[["penetration", "scr"]] <= 1).all().all()
    assert list(check.fits["seed"]) == [1, 2] and (check.fits["S"] > 0).all()
    assert ((check.fits["polarisation"] > 0) & (check.fits["polarisation"] < 1)).all()
    assert calibration_check(scenario_from_dict(_small("baseline.toml", 200)), [1], window_weeks=4).dirichlet is None


def test_the_contractual_baseline_meets_every_target_and_is_stationary():
    """Every target of the calibration check, the stationarity bands over the three years after the warm-up among
    them, judged on the mean of three seeds (3,000 customers: a year's churn then varies by about 0.01 from seed to
    seed), and the instrument's score-5 cutpoint where the calibration puts it."""
    check = calibration_check(scenario_from_dict(_small("baseline.toml", 3000)), [1, 2, 3])
    report = check.report.set_index("measure")
    targets = {t.name: t for t in (CHURN, TOP_BOX, SCORE_5, SATISFIED_DEFECTORS, DRIFT_SATISFACTION, DRIFT_CHURN,
                                   DRIFT_SHARE)}
    assert set(report.index) == set(targets)  # the horizon leaves full years after the warm-up
    for measure, row in report.iterrows():
        assert row["ok"] and targets[measure].low <= row["mean"] <= targets[measure].high, (measure, row)
    assert abs(check.top_box_cutpoint - load_scenario(SCENARIOS / "baseline.toml").market.survey.cutpoints[-1]) < 0.002


def _dirichlet_rows(counts: np.ndarray) -> pd.DataFrame:
    """The calibration report's Dirichlet rows for one panel of purchase counts [customers, brands A, B, C]."""
    table, fit = dirichlet.brand_table(counts, ["A", "B", "C"])
    return dirichlet_report(pd.DataFrame([dirichlet_gaps(table, fit.polarisation)])).set_index("measure")


def test_the_dirichlet_bands_hold_for_dirichlet_buying_and_fail_for_a_niche_brand():
    """A year of Dirichlet buying (polarisation 0.5) meets every band; replace brand C by a niche store that a tenth
    of the shoppers use for all their trips and nobody else visits, and C's penetration falls far below the
    Dirichlet's, its SCR far above it, its buyers buy far more often than the Dirichlet allows."""
    rng = np.random.default_rng(5)
    shares = np.array([0.45, 0.35, 0.2])
    counts = dirichlet.sample(rng, 5000, 50.0, 1.0, 1.0, shares)
    rows = _dirichlet_rows(counts)
    assert len(rows) == 10 and rows["ok"].all(), rows
    niche = dirichlet.sample(rng, 5000, 50.0, 1.0, 1.0, np.array([0.55, 0.45, 1e-9]))
    niche[:, 2] = 0
    loyal = rng.random(5000) < 0.1
    niche[loyal, 2] = niche[loyal].sum(axis=1)
    niche[loyal, :2] = 0
    rows = _dirichlet_rows(niche)
    assert rows.loc["Dirichlet penetration gap, C", "mean"] < -0.05
    assert rows.loc["Dirichlet SCR gap, C", "mean"] > 0.05
    assert rows.loc["Dirichlet purchase frequency gap, C", "mean"] > 0.15
    assert not rows.loc[["Dirichlet penetration gap, C", "Dirichlet SCR gap, C",
                         "Dirichlet purchase frequency gap, C"], "ok"].any()


def test_the_polarisation_band_rules_out_everyone_in_every_store_and_everyone_in_one():
    """Dirichlet buying fits its own predictions whatever its polarisation, so only the polarisation band tells a
    market where every shopper splits its trips across all stores (phi 0.15) or keeps to one (phi 0.85) from one of
    repertoires with a favourite (phi 0.5)."""
    rng = np.random.default_rng(6)
    shares = np.array([0.45, 0.35, 0.2])
    for phi, ok in ((0.15, False), (0.5, True), (0.85, False)):
        rows = _dirichlet_rows(dirichlet.sample(rng, 5000, 50.0, 1.0, (1 - phi) / phi, shares))
        assert rows.drop(index=DIRICHLET_POLARISATION.name)["ok"].all(), (phi, rows)
        assert rows.loc[DIRICHLET_POLARISATION.name, "ok"] == ok, (phi, rows.loc[DIRICHLET_POLARISATION.name])


def test_the_repertoire_baseline_meets_its_bands_and_its_awareness_half_life_is_what_makes_the_stores_nbd_fit():
    """The shipped repertoire baseline (3,000 customers, seeds 1 and 2) meets every band of the calibration check,
    stationarity, the Dirichlet's and the stores' 13-week NBD fits included. The consideration sets' awareness
    half-life was calibrated to that last fit: at the module default (26 weeks) more shoppers forget the Focal
    store, leaving more non-buyers and fewer one-time buyers than the NBD has, and its fit is clearly worse."""
    data = _small("baseline_repertoire.toml", 3000)
    report = calibration_report(scenario_from_dict(data), [1, 2])
    measures = set(report["measure"])
    assert {"drift of mean satisfaction", "drift of annual churn", "largest drift of a firm's share",
            "Dirichlet polarisation", "Dirichlet penetration gap, Rival B", "Dirichlet SCR gap, Focal",
            "Dirichlet purchase frequency gap, Rival A", "NBD fit gap, Focal"} <= measures
    judged = report["ok"].notna()
    assert report.loc[judged, "ok"].all(), report[judged & (report["ok"] == False)]  # noqa: E712
    assert report.set_index("measure").loc["share of scores 4-5", "min"] >= TOP_BOX.low
    data["market"]["consideration"]["half_life"] = "26 weeks"
    forgetful = calibration_report(scenario_from_dict(data), [1, 2]).set_index("measure")
    focal = report.set_index("measure").loc["NBD fit gap, Focal", "mean"]
    assert forgetful.loc["NBD fit gap, Focal", "mean"] > focal + 0.01, (focal, forgetful.loc["NBD fit gap, Focal"])


def test_the_drift_between_the_first_and_last_year_after_the_warm_up_is_measured_and_judged():
    """A rival's deep price cut in the last year moves shares beyond the stationarity band; the same market without it
    stays within it; a horizon with one year after the warm-up has no drift rows."""
    data = _small("baseline.toml", 2000)
    steady = calibration_report(scenario_from_dict(data), [1], window_weeks=4).set_index("measure")
    data["market"]["events"] = [{"kind": "price_change", "at": "270 weeks", "firm": "Rival A", "price": 21.0}]
    cut = calibration_report(scenario_from_dict(data), [1], window_weeks=4).set_index("measure")
    share = "largest drift of a firm's share"
    assert steady.loc[share, "ok"] and steady.loc[share, "mean"] < DRIFT_SHARE.high
    assert not cut.loc[share, "ok"] and cut.loc[share, "mean"] > 1.5 * DRIFT_SHARE.high
    data["time"].update(horizon="220 weeks")  # the warm-up (156 weeks) and one full year
    short = calibration_report(scenario_from_dict(data), [1], window_weeks=4)
    assert not short["measure"].str.startswith(("drift", "largest drift")).any()


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, "-m", "loyaltysim.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def _short_file(name: str) -> str:
    """A shipped scenario file's text with 300 customers, 30 weeks and a 10-week warm-up."""
    text = (SCENARIOS / name).read_text().replace("population = 10000", "population = 300", 1)
    text = re.sub(r'^horizon = "\d+ weeks"', 'horizon = "30 weeks"', text, count=1, flags=re.M)
    short = re.sub(r'^warmup = "\d+ weeks"', 'warmup = "10 weeks"', text, count=1, flags=re.M)
    assert 'horizon = "30 weeks"' in short and 'warmup = "10 weeks"' in short
    return short


def test_calibrate_check_command_prints_the_table_and_strict_fails_on_a_miss(tmp_path):
    import tomllib

    assert tomllib.loads((SCENARIOS / "baseline.toml").read_text())["market"]["customers"]["population"] == 10000
    small = _short_file("baseline.toml")
    (tmp_path / "s.toml").write_text(small)
    ok = _cli("calibrate-check", "s.toml", "--seeds", "1", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "annual churn" in ok.stdout and "share of scores 4-5" in ok.stdout
    assert "Score 5's cutpoint for 35% top-box answers in this market" in ok.stdout
    assert "NBD-Dirichlet" not in ok.stdout  # a contractual market has no brand repertoires
    (tmp_path / "r.toml").write_text(_short_file("baseline_repertoire.toml"))
    rep = _cli("calibrate-check", "r.toml", "--seeds", "1", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "NBD-Dirichlet over the first 20 weeks" in rep.stdout and "polarisation" in rep.stdout
    assert "Dirichlet polarisation" in rep.stdout and "Dirichlet SCR gap, Focal" in rep.stdout  # the bands' rows
    for name in ("Focal", "Rival A", "Rival B", "(category)", "SCR", "penetration"):
        assert name in rep.stdout, name
    for out in (ok.stdout, rep.stdout):  # laid out for 80 columns off a terminal
        assert max(len(line) for line in out.splitlines()) <= 80
    assert "Where the targets come from:" in ok.stdout and "Reichheld & Sasser 1990" in ok.stdout
    # no switching costs, constant search: churn far above 30% a year
    wild = small.replace("switching_cost = 0.5 ", "switching_cost = 0.0 ", 1).replace(
        'search_when_satisfied = "5% per month"', 'search_when_satisfied = "90% per month"', 1)
    assert wild != small
    (tmp_path / "wild.toml").write_text(wild)
    strict = _cli("calibrate-check", "wild.toml", "--seeds", "1", "--strict", cwd=tmp_path)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "NO" in strict.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.glob("*.toml")))
def test_every_shipped_scenario_is_valid(name):
    assert load_scenario(SCENARIOS / name).name
