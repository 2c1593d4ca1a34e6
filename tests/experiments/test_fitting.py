"""Calibration by the simulated method of moments: parameter recovery from the model's own output, a parameter the
targets cannot identify, a transaction log's moments, resuming, and bad targets files."""

import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_process import clean_env, finish, start
from loyaltysim import load_scenario, simulate
from loyaltysim.experiments.fitting import CalibrationError, calibrate, load_targets
from loyaltysim.experiments.run import with_outcomes
from loyaltysim.reporting.fit import write_fit
from loyaltysim.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"
SMALL = {"population": 800, "horizon": "52 weeks", "warmup": "8 weeks"}
TRUTH = {"switching_cost": 0.8, "purchase_rate": 1.5}  # per week
OUTCOMES = {"churn": "market.annual_churn", "focal_churn": "focal.annual_churn", "revenue": "focal.revenue"}


def _toml_value(v) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def write_targets(path: Path, moments: dict[str, tuple[str, float, float]], parameters: list[dict], *,
                  name: str = "recovery", replications: int = 3, initial: int = 8, local: int = 14,
                  extra: str = "", sizes: dict | None = None) -> Path:
    lines = ["schema_version = 1", f'name = "{name}"', f"replications = {replications}", "root_seed = 5"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in (SMALL if sizes is None else sizes).items()]
    lines += ["", "[search]", "seed = 3", f"initial = {initial}", f"local = {local}"]
    for p in parameters:
        lines += ["", "[[parameters]]", *(f"{k} = {_toml_value(v)}" for k, v in p.items())]
    for mname, (outcome, value, sd) in moments.items():
        lines += ["", "[[moments]]", f'name = "{mname}"', f'outcome = "{outcome}"', f"value = {value!r}",
                  f"sd = {sd!r}"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


SWITCHING = {"name": "switching_cost", "path": "market.customers.switching_cost", "bounds": [0.2, 2.0]}
RATE = {"name": "purchase_rate", "path": "market.customers.purchase_rate.mean", "bounds": [0.5, 3.0],
        "unit": "per week"}


@pytest.fixture(scope="module")
def observed():
    """What a firm of this size would measure at the true parameters: the mean over six runs on seeds the
    calibration never uses, with one run's spread as the targets' standard errors."""
    base = load_scenario(BASELINE).with_changes({
        "market.customers.population": SMALL["population"], "time.horizon": SMALL["horizon"],
        "time.warmup": SMALL["warmup"], "market.customers.switching_cost": TRUTH["switching_cost"],
        "market.customers.purchase_rate.mean": f"{TRUTH['purchase_rate']} per week"})
    rows = [with_outcomes(simulate(base, seed=900 + i), list(OUTCOMES.values()))["outcomes"] for i in range(6)]
    values = pd.DataFrame(rows)
    return {name: (outcome, float(values[outcome].mean()), float(values[outcome].std(ddof=1)))
            for name, outcome in OUTCOMES.items()}


@pytest.fixture(scope="module")
def recovered(observed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recovery")
    targets = write_targets(folder / "targets.toml", observed, [SWITCHING, RATE])
    cal = load_targets(targets, BASELINE)
    fit = calibrate(cal, folder / "out", f"sqlite:///{folder / 'out' / 'registry.sqlite'}", workers=2)
    return cal, fit, folder


def test_the_fit_recovers_the_parameters_that_made_the_targets(recovered):
    _, fit, _ = recovered
    params = fit.parameters()
    for name, truth in TRUTH.items():
        row = params.loc[name]
        assert row["identified"]
        assert row["low"] <= truth <= row["high"], (name, row.to_dict())
        assert row["high"] - row["low"] < 0.25 * (row["upper_bound"] - row["lower_bound"])  # informative
    assert abs(params.loc["switching_cost", "estimate"] - 0.8) < 0.15
    assert abs(params.loc["purchase_rate", "estimate"] - 1.5) < 0.2
    assert (fit.targets()["z"].abs() < 1.96).all()
    stages = [e.stage for e in fit.evaluations]
    assert stages.count("initial") == 8 and stages.count("jacobian") == 4 and 0 < stages.count("local") <= 14
    # the estimate is the best point evaluated, and much better than the initial design's best
    searched = [e.score for e in fit.evaluations if e.stage != "jacobian"]
    assert fit.best.score == min(searched)
    assert fit.best.score < 0.5 * min(e.score for e in fit.evaluations if e.stage == "initial")


def test_the_outputs_hold_the_calibrated_scenario_the_fit_and_every_evaluation(recovered):
    _, fit, folder = recovered
    written = write_fit(fit, folder / "report")
    names = {p.name for p in written}
    assert {"calibrated.toml", "fit.md", "parameters.csv", "targets.csv", "jacobian.csv", "evaluations.csv",
            "fit.png"} <= names
    calibrated = load_scenario(folder / "report" / "calibrated.toml")
    assert calibrated.market.customers.switching_cost == pytest.approx(fit.estimate["switching_cost"])
    assert calibrated.market.customers.purchase_rate.mean.per_step("week") == pytest.approx(
        fit.estimate["purchase_rate"])
    assert calibrated.market.customers.population == load_scenario(BASELINE).market.customers.population
    text = (folder / "report" / "fit.md").read_text()
    assert "| switching_cost" in text and "3 of 3 moments are within 1.96" in text
    assert "population 800" in text  # the runs' overrides are said
    evaluations = pd.read_csv(folder / "report" / "evaluations.csv")
    assert len(evaluations) == len(fit.evaluations)
    assert set(evaluations["stage"]) == {"initial", "local", "jacobian"}


def test_a_second_calibration_replays_the_search_from_the_stored_runs(recovered):
    cal, fit, folder = recovered
    again = calibrate(cal, folder / "out", f"sqlite:///{folder / 'out' / 'registry.sqlite'}", workers=2)
    assert again.new_runs == 0 and again.reused_runs == fit.new_runs
    assert again.estimate == fit.estimate
    pd.testing.assert_frame_equal(again.parameters(), fit.parameters())


def test_a_parameter_the_targets_do_not_depend_on_is_not_identified(observed, tmp_path):
    """The check that could fail: the discount rate moves NPV only, so churn and revenue say nothing about it, and
    the fit must say so rather than report an interval."""
    discount = {"name": "discount_rate", "path": "economics.discount_rate", "bounds": [2.0, 20.0],
                "unit": "% per year"}
    targets = write_targets(tmp_path / "targets.toml", observed, [SWITCHING, discount], name="unidentified",
                            replications=2, initial=2, local=0)
    fit = calibrate(load_targets(targets, BASELINE), tmp_path / "out",
                    f"sqlite:///{tmp_path / 'out' / 'registry.sqlite'}", workers=2)
    params = fit.parameters()
    assert params.loc["switching_cost", "identified"]
    assert not params.loc["discount_rate", "identified"]
    assert np.isnan(params.loc["discount_rate", "se"])
    assert (fit.jacobian["discount_rate"] == 0).all()
    assert "not identified" in (write_fit(fit, tmp_path / "report") and (tmp_path / "report" / "fit.md").read_text())


def test_a_transaction_log_is_fitted_through_the_same_moments_as_the_runs_purchase_log(tmp_path):
    """Targets from a transaction log: the log is the focal firm's purchases in a run at a known purchase rate,
    written as a firm would (customer, date, amount); the fit finds that rate from the log's repeat histogram and
    tracking curve, and tracks the held-out weeks."""
    sizes = {"population": 600, "horizon": "40 weeks", "warmup": "4 weeks"}
    truth = load_scenario(BASELINE).with_changes({
        "market.customers.population": 600, "time.horizon": "40 weeks", "time.warmup": "4 weeks",
        "market.customers.purchase_rate.mean": "0.6 per week", "outputs.event_logs": ["purchases"]})
    log = simulate(truth, seed=77).tables["purchases"]
    log = log[(log["firm"] == "Focal") & (log["step"] > 4)]
    dates = pd.Timestamp("2025-01-06") + pd.to_timedelta((log["step"] - 5) * 7, unit="D")
    pd.DataFrame({"customer": "c" + log["customer"].astype(str), "date": dates.dt.strftime("%Y-%m-%d"),
                  "amount": log["revenue"].round(2)}).to_csv(tmp_path / "log.csv", index=False)
    extra = ("\n[transactions]\nfile = \"log.csv\"\nweeks = 24\nholdout_weeks = 12\ncohort_weeks = 4\n"
             "moments = [\"repeat_histogram\", \"cumulative_repeats\"]\nbootstrap = 50\nbenchmark = \"bgnbd\"\n")
    rate = {**RATE, "bounds": [0.2, 1.5]}
    targets = write_targets(tmp_path / "targets.toml", {}, [rate], name="from_log", replications=2, initial=4,
                            local=8, extra=extra, sizes=sizes)
    cal = load_targets(targets, BASELINE)
    assert "purchases" in cal.base.outputs.event_logs  # switched on for the runs
    assert len(cal.target) == 8 + 2 and (cal.sd > 0).all()
    fit = calibrate(cal, tmp_path / "out", f"sqlite:///{tmp_path / 'out' / 'registry.sqlite'}", workers=2)
    row = fit.parameters().loc["purchase_rate"]
    assert abs(row["estimate"] - 0.6) < 0.1
    assert row["low"] <= 0.6 <= row["high"]
    written = write_fit(fit, tmp_path / "report")
    assert "tracking.png" in {p.name for p in written}
    curve = pd.read_csv(tmp_path / "report" / "tracking.csv", index_col="week")
    assert len(curve) == 36
    assert abs(curve["simulated"].iloc[-1] / curve["observed"].iloc[-1] - 1) < 0.1
    text = (tmp_path / "report" / "fit.md").read_text()
    assert "Held-out weeks" in text and "## Beside the BG/NBD" in text
    assert "bgnbd" in curve and curve["bgnbd"].is_monotonic_increasing
    assert "bgnbd_histogram.csv" in {p.name for p in written}


def test_a_stopped_calibration_keeps_its_evaluations_and_the_same_command_resumes(observed, tmp_path):
    targets = write_targets(tmp_path / "targets.toml", observed, [SWITCHING], name="stopped", replications=2,
                            initial=4, local=2)
    out = tmp_path / "out"
    args = ("calibrate", BASELINE, "--targets", targets, "--out", out, "--workers", "2")
    proc = start(*args, cwd=tmp_path, env=clean_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "runs").glob("[0-9a-f]*"))) < 4:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stopped = finish(proc)
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted" in stopped.stderr and "resumes" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert not (out / "stopped").exists()  # no fit written from a part of the search
    kept = len(list((out / "runs").glob("[0-9a-f]*")))
    assert kept >= 4
    done = finish(start(*args, cwd=tmp_path, env=clean_env()))
    assert done.returncode == 0, done.stderr
    assert "found stored" in done.stdout
    reused = int(done.stdout.split(" runs made, ")[1].split(" found stored")[0])
    assert reused >= 4
    assert (out / "stopped" / "fit.md").exists() and (out / "stopped" / "calibrated.toml").exists()


@pytest.mark.parametrize("edit, expected, command", [
    (lambda t: t.replace('path = "market.customers.switching_cost"', 'path = "market.customers.switching_costs"'),
     "has no key 'switching_costs'; did you mean 'switching_cost'? (parameter switching_cost", True),
    (lambda t: t.replace("bounds = [0.2, 2.0]", "bounds = [2.0, 0.2]"), "lower bound must be below", False),
    (lambda t: t.replace("bounds = [0.2, 2.0]", "bounds = [-1.0, 2.0]"), "parameters[0].bounds[0]", False),
    (lambda t: t.replace('outcome = "market.annual_churn"', 'outcome = "market.churn"'), "unknown outcome", False),
    (lambda t: t.replace('outcome = "market.annual_churn"', 'outcome = "market.annual_churn[segment=heavy]"'),
     "names unknown segment 'heavy'; the market declares no segments", False),
    (lambda t: t.replace("sd = ", "sd = -"), "moments[0].sd", False),
    (lambda t: t.replace("[search]", "[search]\nsteps = 3"), "search.steps", False),
    (lambda t: t.replace("[search]", "[search]\nstart = { switching_cost = 5.0 }"), "lies outside its bounds",
     False),
    (lambda t: t.replace("[search]", "[search]\nstart = { switching_cost = 1.0, churn = 1.0 }"),
     "search.start.churn: not a parameter", False),
    (lambda t: t.replace("[search]", "[search]\nstart = {}"), "missing switching_cost", False),
    (lambda t: t + '\n[transactions]\nfile = "missing.csv"\nweeks = 10\nmoments = ["spend"]\n',
     "missing.csv (transactions.file of", True),
])
def test_a_bad_targets_file_is_refused_naming_what_is_wrong(tmp_path, edit, expected, command):
    moments = {"churn": ("market.annual_churn", 0.13, 0.01), "revenue": ("focal.revenue", 1e6, 1e4)}
    path = write_targets(tmp_path / "targets.toml", moments, [SWITCHING])
    path.write_text(edit(path.read_text()))
    if not command:
        with pytest.raises(ScenarioError) as err:
            load_targets(path, BASELINE)
        assert expected in str(err.value)
        return
    proc = finish(start("calibrate", BASELINE, "--targets", path, "--out", tmp_path / "out", cwd=tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_more_parameters_than_moments_or_no_target_at_all_are_refused(tmp_path):
    path = write_targets(tmp_path / "a.toml", {"churn": ("market.annual_churn", 0.13, 0.01)}, [SWITCHING, RATE])
    with pytest.raises(CalibrationError, match="cannot pin down 2 parameters"):
        load_targets(path, BASELINE)
    path = write_targets(tmp_path / "b.toml", {}, [SWITCHING])
    with pytest.raises(CalibrationError, match="nothing to fit to"):
        load_targets(path, BASELINE)


def test_a_public_data_set_can_be_the_targets_log(cdnow_folder, tmp_path, monkeypatch):
    from loyaltysim.datasets import cdnow
    from loyaltysim.measures import moments as mom

    monkeypatch.setenv("LOYALTYSIM_DATA", str(cdnow_folder.parent))
    extra = ("\n[transactions]\ndataset = \"cdnow-sample\"\nweeks = 39\ncohort_weeks = 12\n"
             "moments = [\"repeat_histogram\"]\nbootstrap = 40\n")
    sizes = {"horizon": "80 weeks", "warmup": "1 week"}
    path = write_targets(tmp_path / "t.toml", {}, [RATE], extra=extra, sizes=sizes)
    cal = load_targets(path, BASELINE)
    expected = mom.compute(cdnow.transactions("sample", cdnow_folder), ["repeat_histogram"],
                           mom.Window(39, 12.0, (39,)))
    pd.testing.assert_series_equal(cal.target, expected, check_names=False)
    assert cal.target["repeats_0"] == pytest.approx(0.60, abs=0.02)  # 6 in 10 of CDNOW's new customers never return
    assert (cal.sd > 0).all()
    both = write_targets(tmp_path / "both.toml", {}, [RATE], extra=extra.replace("dataset", 'file = "x.csv"\ndataset'),
                         sizes=sizes)
    with pytest.raises(CalibrationError, match=r"either file .* or dataset"):
        load_targets(both, BASELINE)


def test_the_shipped_cdnow_calibration_runs_end_to_end_at_a_tiny_size(cdnow_folder, tmp_path, monkeypatch):
    """experiments/targets/cdnow.toml with experiments/scenarios/cdnow.toml, at 300 customers, one replication and
    two points: every output is written, the cohort's tracking runs through week 78 beside the BG/NBD (the full-size
    fit is in the README)."""
    import tomllib

    monkeypatch.setenv("LOYALTYSIM_DATA", str(cdnow_folder.parent))
    targets = ROOT / "experiments" / "targets" / "cdnow.toml"
    transactions = {**tomllib.loads(targets.read_text())["transactions"], "bootstrap": 20}
    cal = load_targets(targets, ROOT / "experiments" / "scenarios" / "cdnow.toml", overrides={
        "population": 300, "replications": 1, "search": {"seed": 1, "initial": 2, "local": 0},
        "transactions": transactions})
    assert cal.target["repeats_0"] == pytest.approx(0.599, abs=0.001)  # CDNOW: 59.9% made no repeat in weeks 1-39
    fit = calibrate(cal, tmp_path / "out", f"sqlite:///{tmp_path / 'out' / 'registry.sqlite'}", workers=2)
    written = {p.name for p in write_fit(fit, tmp_path / "report")}
    assert {"calibrated.toml", "fit.md", "tracking.csv", "bgnbd_histogram.csv", "tracking.png"} <= written
    curve = pd.read_csv(tmp_path / "report" / "tracking.csv", index_col="week")
    assert len(curve) == 78 and curve["observed"].iloc[-1] == pytest.approx(44_021 / 23_570, rel=1e-3)
    assert "## Beside the BG/NBD" in (tmp_path / "report" / "fit.md").read_text()


def test_a_calibration_on_a_dask_cluster_finds_what_the_local_pool_finds(observed, tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client

    from loyaltysim.experiments.cluster import DaskExecutor

    targets = write_targets(tmp_path / "targets.toml", observed, [SWITCHING], name="on_dask", replications=1,
                            initial=2, local=2, sizes={"population": 300, "horizon": "30 weeks", "warmup": "4 weeks"})
    cal = load_targets(targets, BASELINE)
    local = calibrate(cal, tmp_path / "local", f"sqlite:///{tmp_path / 'local' / 'registry.sqlite'}", workers=2)
    client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    on_dask = calibrate(cal, tmp_path / "dask", f"sqlite:///{tmp_path / 'dask' / 'registry.sqlite'}",
                        executor=DaskExecutor(client))
    assert on_dask.estimate == local.estimate
    assert [e.score for e in on_dask.evaluations] == [e.score for e in local.evaluations]


def test_several_local_searches_and_a_bootstrap_of_the_estimate(observed, tmp_path):
    """With ``starts = 2`` a second Nelder-Mead search starts from the second-best initial point, and the estimate is
    the best point of both; with a bootstrap, each replicate refits to redrawn targets on seeds of its own, and the
    intervals are the replicates' percentiles (the sandwich kept beside them)."""
    moments = {k: observed[k] for k in ("churn", "focal_churn")}
    extra = "\n[uncertainty]\nmethod = \"bootstrap\"\nreplicates = 3\nlocal = 3\nseed = 2\n"
    targets = write_targets(tmp_path / "targets.toml", moments, [SWITCHING], name="starts", replications=1,
                            initial=4, local=4, extra=extra,
                            sizes={"population": 500, "horizon": "40 weeks", "warmup": "4 weeks"})
    targets.write_text(targets.read_text().replace("local = 4", "local = 4\nstarts = 2"))
    cal = load_targets(targets, BASELINE)
    db = f"sqlite:///{tmp_path / 'out' / 'registry.sqlite'}"
    fit = calibrate(cal, tmp_path / "out", db, workers=2)
    table = fit.evaluation_table()
    local = table[table["stage"] == "local"]
    assert set(local["start"]) == {1, 2}
    initial = sorted((e for e in fit.evaluations if e.stage == "initial"), key=lambda e: e.score)
    # the second search's simplex is built around the second-best initial point
    second = [e for e in fit.evaluations if e.stage == "local" and e.start == 1]
    assert min(abs(e.unit[0] - initial[1].unit[0]) for e in second) <= 0.1 + 1e-12
    assert fit.best.score == min(e.score for e in fit.evaluations if e.stage != "jacobian")

    boot = fit.bootstrap
    assert list(boot["replicate"]) == [1, 2, 3] and boot["switching_cost"].nunique() > 1
    row = fit.parameters().loc["switching_cost"]
    assert row["se"] == pytest.approx(boot["switching_cost"].std(ddof=1))
    assert row["low"] == pytest.approx(np.quantile(boot["switching_cost"], 0.025))
    assert row["high"] == pytest.approx(np.quantile(boot["switching_cost"], 0.975))
    assert row["method"] == "bootstrap (3 replicates)" and row["se_sandwich"] > 0
    # the replicates are runs of their own, stored: the same command replays everything
    again = calibrate(cal, tmp_path / "out", db, workers=2)
    assert again.new_runs == 0 and again.reused_runs == fit.new_runs
    pd.testing.assert_frame_equal(again.bootstrap, boot)
    write_fit(fit, tmp_path / "report")
    assert len(pd.read_csv(tmp_path / "report" / "bootstrap.csv")) == 3
    text = (tmp_path / "report" / "fit.md").read_text()
    assert "2 Nelder-Mead searches from its best points" in text and "bootstrap of the estimate: 3" in text


def test_more_local_searches_than_initial_points_are_refused(tmp_path):
    path = write_targets(tmp_path / "t.toml", {"churn": ("market.annual_churn", 0.13, 0.01)}, [SWITCHING],
                         initial=2)
    path.write_text(path.read_text().replace("local = 14", "local = 14\nstarts = 3"))
    with pytest.raises(CalibrationError, match=r"search.starts: 3 local searches need as many initial points"):
        load_targets(path, BASELINE)


def test_a_given_start_is_evaluated_first_and_searched_from_when_it_is_the_best(observed, tmp_path):
    """``[search] start`` (e.g. a published estimate) is evaluated before the design and competes with its points:
    here it is the truth, so the local search starts from it."""
    moments = {k: observed[k] for k in ("churn", "focal_churn")}
    targets = write_targets(tmp_path / "targets.toml", moments, [SWITCHING], name="given", replications=1,
                            initial=2, local=3)
    start_value = TRUTH["switching_cost"]
    text = targets.read_text().replace("[search]", f"[search]\nstart = {{ switching_cost = {start_value} }}")
    targets.write_text(text)
    cal = load_targets(targets, BASELINE)
    fit = calibrate(cal, tmp_path / "out", f"sqlite:///{tmp_path / 'out' / 'registry.sqlite'}", workers=2)
    first = fit.evaluations[0]
    assert first.stage == "given" and first.values["switching_cost"] == pytest.approx(start_value)
    assert [e.stage for e in fit.evaluations[1:3]] == ["initial", "initial"]
    if first.score <= min(e.score for e in fit.evaluations[1:3]):
        local = [e for e in fit.evaluations if e.stage == "local"]
        assert min(abs(e.unit[0] - first.unit[0]) for e in local) <= 0.1 + 1e-12
    write_fit(fit, tmp_path / "report")
    assert "the targets' start, 2 of a Sobol' design" in (tmp_path / "report" / "fit.md").read_text()
