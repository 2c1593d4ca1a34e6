"""Tests of reports: the statistics against hand-computed values on canned results (tests/data), the Markdown
tables, the figures (valid PNGs), the figure registry, and reading the registry: only the experiment's own
runs on the current code, refusing an incomplete sweep unless asked for a partial report."""

import io
import json
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from loyaltysim.cli import app
from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.storage import DB_ENV_VAR, Registry, RunRecord, read_run_dir
from loyaltysim.experiments.sweep import plan, run_sweep
from loyaltysim.measures.outcomes import compute
from loyaltysim.reporting import report
from loyaltysim.reporting.report import (
    ReportError,
    collect_results,
    describe_outcome,
    figure_file_name,
    interval,
    markdown_table,
    outcome_figure,
    paired_differences,
    summary_table,
    write_report,
    write_report_files,
)
from loyaltysim.scenario import scenario_from_dict

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_experiment.toml"
CANNED = DATA / "canned_results.csv"
PNG = b"\x89PNG\r\n\x1a\n"
# two-sided 95% quantiles of Student's t from a printed table, by degrees of freedom
T = {1: 12.7062047362, 2: 4.30265272975, 3: 3.18244630528}
OUTCOMES = ["focal.share_end", "market.annual_churn"]


def canned() -> pd.DataFrame:
    """Price (30, 34) x market (competitive, hostage), 4 replications, two outcomes, some values missing."""
    return pd.read_csv(CANNED, dtype={"price": str, "market": str})


@pytest.fixture(scope="module")
def canned_experiment():
    """The tiny example experiment, with the canned results' replications and outcomes."""
    return load_experiment(TINY, overrides={"replications": 4, "outcomes": OUTCOMES})


def row(frame: pd.DataFrame, **labels) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for k, v in labels.items():
        mask &= frame[k].astype(str) == v
    (i,) = frame.index[mask]
    return frame.loc[i]


def assert_stats(r: pd.Series, n: int, mean: float, sd: float, half: float) -> None:
    assert r["n"] == n
    for name, want in (("mean", mean), ("sd", sd), ("ci_low", mean - half), ("ci_high", mean + half)):
        if math.isnan(want):
            assert math.isnan(r[name]), name
        else:
            assert r[name] == pytest.approx(want, abs=1e-9), name


# ------------------------------------------------------------------------------------------ statistics


def test_interval_is_the_t_confidence_interval_of_the_mean_without_nans():
    s = interval([0.30, 0.32, 0.28, 0.34])
    sd = math.sqrt((0.01**2 + 0.01**2 + 0.03**2 + 0.03**2) / 3)  # deviations from the mean 0.31
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.31) and s["sd"] == pytest.approx(sd)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((0.31 - T[3] * sd / 2, 0.31 + T[3] * sd / 2))
    s = interval([1.0, float("nan"), 3.0])
    assert s["n"] == 2 and s["mean"] == 2.0 and s["sd"] == pytest.approx(math.sqrt(2))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((2 - T[1], 2 + T[1]))  # half-width t * sqrt(2) / sqrt(2)
    one = interval([5.0])
    assert one["n"] == 1 and one["mean"] == 5.0 and math.isnan(one["sd"]) and math.isnan(one["ci_low"])
    none = interval([float("nan")])
    assert none["n"] == 0 and math.isnan(none["mean"]) and math.isnan(none["ci_high"])


def test_the_summary_gives_n_mean_sd_and_ci_per_design_point_and_outcome():
    summary = summary_table(canned(), ["price", "market"])
    assert list(summary.columns) == ["price", "market", "outcome", "n", "mean", "sd", "ci_low", "ci_high"]
    # outcome by outcome, design points in their order
    assert [tuple(map(str, r)) for r in summary[["outcome", "price", "market"]].itertuples(index=False)] == [
        (o, p, m) for o in OUTCOMES for p in ("30", "34") for m in ("competitive", "hostage")]
    share, churn = "focal.share_end", "market.annual_churn"
    assert_stats(row(summary, price="30", market="competitive", outcome=share), 4, 0.31, 0.0258198889747,
                 T[3] * 0.0258198889747 / 2)
    assert_stats(row(summary, price="30", market="hostage", outcome=share), 3, 0.40, 0.02,  # one NaN dropped
                 T[2] * 0.02 / math.sqrt(3))
    assert_stats(row(summary, price="34", market="hostage", outcome=churn), 4, 0.25, 0.129099444874,
                 T[3] * 0.129099444874 / 2)
    assert_stats(row(summary, price="30", market="competitive", outcome=churn), 4, 0.2, 0.0, 0.0)
    assert_stats(row(summary, price="34", market="competitive", outcome=churn), 1, 0.25, math.nan, math.nan)
    assert_stats(row(summary, price="30", market="hostage", outcome=churn), 0, math.nan, math.nan, math.nan)


def test_paired_differences_are_taken_replication_by_replication_against_the_reference():
    diffs = paired_differences(canned(), ["price", "market"], {"price": "30"}, risk=True)
    assert list(diffs.columns) == ["price", "market", "reference", "outcome", "n", "mean", "sd", "ci_low",
                                   "ci_high", "p05", "p95", "p_negative"]
    assert len(diffs) == 4 and set(diffs["price"].astype(str)) == {"34"} and set(diffs["reference"]) == {"price=30"}
    share, churn = "focal.share_end", "market.annual_churn"
    # competitive: 0.25-0.30, 0.26-0.32, 0.27-0.28, 0.30-0.34 = -0.05, -0.06, -0.01, -0.04
    r = row(diffs, market="competitive", outcome=share)
    sd = math.sqrt((0.01**2 + 0.02**2 + 0.03**2 + 0.0**2) / 3)
    assert_stats(r, 4, -0.04, sd, T[3] * sd / 2)
    # percentiles by linear interpolation over the sorted -0.06, -0.05, -0.04, -0.01: positions 0.15 and 2.85
    assert r["p05"] == pytest.approx(-0.06 + 0.15 * 0.01) and r["p95"] == pytest.approx(-0.04 + 0.85 * 0.03)
    assert r["p_negative"] == 1.0
    # hostage: replications 1 and 2 lack a value on one side: 0.41-0.40 and 0.37-0.38 remain
    r = row(diffs, market="hostage", outcome=share)
    assert_stats(r, 2, 0.0, math.sqrt(2) * 0.01, T[1] * 0.01)
    assert (r["p05"], r["p95"], r["p_negative"]) == pytest.approx((-0.009, 0.009, 0.5))
    r = row(diffs, market="competitive", outcome=churn)  # one pair: 0.25 - 0.2
    assert_stats(r, 1, 0.05, math.nan, math.nan)
    assert (r["p05"], r["p95"], r["p_negative"]) == pytest.approx((0.05, 0.05, 0.0))
    r = row(diffs, market="hostage", outcome=churn)  # the reference has no value at all
    assert r["n"] == 0 and math.isnan(r["mean"]) and math.isnan(r["p05"]) and math.isnan(r["p_negative"])

    plain = paired_differences(canned(), ["price", "market"], {"price": "30"})
    assert "p05" not in plain.columns and plain["mean"].tolist() == pytest.approx(diffs["mean"].tolist(),
                                                                                   nan_ok=True)


def test_a_reference_for_every_factor_compares_all_design_points_with_one():
    diffs = paired_differences(canned(), ["price", "market"], {"price": "30", "market": "competitive"})
    assert len(diffs) == 6 and set(diffs["reference"]) == {"price=30, market=competitive"}
    # (30, hostage) - (30, competitive): 0.40-0.30, NaN, 0.42-0.28, 0.38-0.34
    r = row(diffs, price="30", market="hostage", outcome="focal.share_end")
    assert r["n"] == 3 and r["mean"] == pytest.approx((0.10 + 0.14 + 0.04) / 3)
    assert paired_differences(canned(), ["price", "market"], {}).empty


# ------------------------------------------------------------------------------------------ tables and figures


def test_markdown_tables_align_numbers_and_escape_pipes():
    frame = pd.DataFrame({"design": ["a|b", "c"], "n": [3, 0], "mean": [0.123456, float("nan")],
                          "npv": [1234567.8, -12.5]})
    assert markdown_table(frame) == (
        "| design | n | mean | npv |\n"
        "| --- | ---: | ---: | ---: |\n"
        "| a\\|b | 3 | 0.1235 | 1,234,568 |\n"
        "| c | 0 | - | -12.5 |\n")


def test_outcomes_are_described_with_their_units():
    assert describe_outcome("focal.cohort_retention") == (
        "focal firm: warm-up cohort still with the firm at the end (fraction)")
    assert describe_outcome("firm[Rival A].npv") == "Rival A: NPV of profit at the end of the warm-up (money)"
    assert describe_outcome("market.retention_by_score_4") == "market: retained a year after scoring 4 (fraction)"
    assert describe_outcome("something else") == "something else"
    assert describe_outcome("focal.cohort_attitude - firm[Average].cohort_attitude") == (
        "difference within the run: focal firm: mean attitude of the warm-up cohort, leavers as 0 (0-1) minus "
        "firm[Average].cohort_attitude")
    assert figure_file_name("firm[Rival A].share_end") == "firm_Rival_A_.share_end.png"


def test_report_files_from_canned_results(canned_experiment, tmp_path):
    calls = []

    @report.register_figure("canned_probe")
    def probe(results, experiment, folder):
        calls.append((len(results), experiment.name, folder))
        path = folder / "probe.txt"
        path.write_text("drawn")
        return path

    try:
        exp = load_experiment(TINY, overrides={"replications": 4, "outcomes": OUTCOMES, "figures": ["canned_probe"]})
        paths = write_report_files(canned(), exp, tmp_path / "tiny_price")
    finally:
        report.unregister_figure("canned_probe")
    folder = tmp_path / "tiny_price"
    assert [p.relative_to(folder).as_posix() for p in paths] == [
        "results.csv", "summary.csv", "summary.md", "differences.csv", "differences.md",
        "figures/focal.share_end.png", "figures/market.annual_churn.png", "figures/probe.txt"]
    assert calls == [(32, "tiny_price", folder / "figures")]
    summary = pd.read_csv(folder / "summary.csv", dtype={"price": str, "market": str})
    expected = summary_table(canned(), ["price", "market"])
    for col in ("price", "market", "outcome"):
        expected[col] = expected[col].astype(str)
    pd.testing.assert_frame_equal(summary, expected, check_dtype=False)
    md = (folder / "summary.md").read_text()
    assert md.startswith("# tiny_price: summary\n\nThe focal firm's price in a competitive and a hostage market")
    assert "over 4 replication(s)" in md
    assert "| 30 | competitive | focal.share_end | 4 | 0.31 | 0.02582 | 0.2689 | 0.3511 |" in md
    assert "| 30 | hostage | market.annual_churn | 0 | - | - | - | - |" in md
    diff_md = (folder / "differences.md").read_text()
    assert diff_md.startswith("# tiny_price: paired differences against price=30")
    assert "| 34 | competitive | price=30 | focal.share_end | 4 | -0.04 | 0.0216 | -0.07437 | -0.005626 | " \
           "-0.0585 | -0.0145 | 1 |" in diff_md
    for png in (folder / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000


def test_without_a_reference_there_are_no_differences(tmp_path):
    exp = load_experiment(TINY, overrides={"replications": 4, "outcomes": OUTCOMES, "reference": None,
                                           "risk": False})
    names = [p.name for p in write_report_files(canned(), exp, tmp_path)]
    assert "differences.csv" not in names and "summary.md" in names


@pytest.mark.parametrize("factors", [0, 1, 3])
def test_figures_are_drawn_for_any_number_of_factors(factors, tmp_path):
    names = ["a", "b", "c"][:factors]
    records = []
    for i in range(8):
        labels = {n: f"{n}{(i >> k) & 1}" for k, n in enumerate(names)}
        for r in range(3):
            records.append({**labels, "replication": r, "outcome": "focal.profit", "value": float(i + r)})
            records.append({**labels, "replication": r, "outcome": "focal.npv", "value": float("nan")})
    tidy = pd.DataFrame(records)
    for outcome in ("focal.profit", "focal.npv"):  # the second has no value at all
        path = outcome_figure(tidy, outcome, names, tmp_path / f"{outcome}.png", title="probe")
        assert path.read_bytes()[:8] == PNG


# ------------------------------------------------------------------------------------------ from the registry


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The tiny experiment swept in-process: 8 runs in a registry."""
    out = tmp_path_factory.mktemp("report")
    exp = load_experiment(TINY)
    db = f"sqlite:///{out / 'registry.sqlite'}"
    result = run_sweep(exp, out, db, workers=2, executor_factory=lambda: ThreadPoolExecutor(2), stream=io.StringIO())
    assert result.complete
    return exp, out, db


def copy_registry(stored, tmp_path) -> str:
    shutil.copy(stored[1] / "registry.sqlite", tmp_path / "registry.sqlite")
    return f"sqlite:///{tmp_path / 'registry.sqlite'}"


def test_the_tidy_results_are_one_row_per_run_and_outcome_in_design_order(stored):
    exp, out, db = stored
    with Registry(db) as reg:
        tidy, missing = collect_results(exp, reg, out)
    assert missing == 0 and len(tidy) == 8 * 4
    assert list(tidy.columns) == ["price", "market", "design", "replication", "outcome", "value", "key", "run_dir"]
    assert tidy["design"].tolist() == [d for d in range(4) for _ in range(2 * 4)]
    assert list(tidy["price"].cat.categories) == ["30", "34"] and list(tidy["outcome"].cat.categories) == exp.outcomes
    assert tidy[tidy["outcome"] == "market.retention_by_score_5"]["value"].isna().all()
    first = tidy.iloc[0]
    manifest, _ = read_run_dir(first["run_dir"])
    assert manifest["outcomes"][first["outcome"]] == first["value"] and manifest["run_key"] == first["key"]


def test_the_report_holds_only_this_experiments_runs_on_the_current_code(stored, tmp_path):
    exp, _, _ = stored
    db = copy_registry(stored, tmp_path)
    with Registry(db) as reg:  # a run of the same experiment by other code: another key
        reg.upsert_run(RunRecord(key="f" * 64, experiment_name="tiny_price", scenario_name="baseline",
                                 seed_entropy="1", version="0.0.1", status="done", run_dir=str(tmp_path / "elsewhere"),
                                 summary_json=json.dumps({"outcomes": {"focal.share_end": 99.0}})))
    result = write_report(exp, tmp_path, db)
    assert (result.runs, result.total, result.missing) == (8, 8, 0)
    assert result.folder == tmp_path.resolve() / "tiny_price"
    tidy = pd.read_csv(result.folder / "results.csv")
    assert len(tidy) == 32 and 99.0 not in tidy["value"].tolist() and "f" * 64 not in tidy["key"].tolist()
    summary = pd.read_csv(result.folder / "summary.csv")
    assert summary[summary["outcome"] == "focal.share_end"]["n"].tolist() == [2, 2, 2, 2]
    assert summary[summary["outcome"] == "market.retention_by_score_5"]["n"].tolist() == [0, 0, 0, 0]
    assert all(p.exists() for p in result.paths)


def test_an_incomplete_sweep_is_refused_unless_a_partial_report_is_asked_for(stored, tmp_path):
    exp, _, _ = stored
    db = copy_registry(stored, tmp_path)
    key = plan(exp, tmp_path)[0].key
    with Registry(db) as reg:
        failed = reg.get_run(key)
        failed.status = "failed"
        reg.upsert_run(failed)
    with pytest.raises(ReportError, match=r"1 of 8 runs of experiment 'tiny_price' are not stored .* --partial"):
        write_report(exp, tmp_path, db)
    partial = write_report(exp, tmp_path, db, partial=True)
    assert (partial.runs, partial.missing) == (7, 1)
    summary = pd.read_csv(partial.folder / "summary.csv", dtype={"price": str})
    assert summary[summary["outcome"] == "focal.share_end"]["n"].tolist() == [1, 2, 2, 2]
    with Registry(db) as reg:
        for r in reg.runs():
            r.status = "failed"
            reg.upsert_run(r)
    with pytest.raises(ReportError, match="no run of experiment 'tiny_price' is stored"):
        write_report(exp, tmp_path, db, partial=True)


def test_outcomes_a_stored_run_lacks_are_computed_from_its_files(stored, tmp_path):
    exp = load_experiment(TINY, overrides={"outcomes": ["focal.profit", "focal.share_end"]})
    _, out, db = stored
    with Registry(db) as reg:
        tidy, missing = collect_results(exp, reg, out)
    assert missing == 0 and len(tidy) == 16
    first = tidy[tidy["outcome"] == "focal.profit"].iloc[0]
    manifest, tables = read_run_dir(first["run_dir"])
    scenario = scenario_from_dict(manifest["scenario"])
    assert first["value"] == compute(["focal.profit"], scenario, tables, manifest["summary"])["focal.profit"]


def test_the_report_command_prints_the_paths_and_refuses_cleanly(stored, tmp_path, monkeypatch):
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    exp, out, _ = stored
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(TINY), "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"report tiny_price: 8 of 8 runs; written to {out.resolve() / 'tiny_price'}"
    assert [Path(p).name for p in lines[1:]] == [
        "results.csv", "summary.csv", "summary.md", "differences.csv", "differences.md",
        *(figure_file_name(o) for o in exp.outcomes)]
    assert all(Path(p).is_file() for p in lines[1:])

    res = runner.invoke(app, ["report", str(TINY), "--out", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no results under" in res.stderr and "loyaltysim sweep" in res.stderr
    db = copy_registry(stored, tmp_path)
    with Registry(db) as reg:
        row_ = reg.get_run(plan(exp, out)[3].key)
        row_.status = "failed"
        reg.upsert_run(row_)
    res = runner.invoke(app, ["report", str(TINY), "--out", str(tmp_path), "--db", db])
    assert res.exit_code == 2 and "1 of 8 runs" in res.stderr and "--partial" in res.stderr
    res = runner.invoke(app, ["report", str(TINY), "--out", str(tmp_path), "--db", db, "--partial"])
    assert res.exit_code == 0 and "7 of 8 runs, 1 missing" in res.stdout
    res = runner.invoke(app, ["report", str(tmp_path / "none.toml")])
    assert res.exit_code == 2 and "file not found" in res.stderr
    res = runner.invoke(app, ["report", str(TINY), "--out", str(tmp_path), "--db",
                              "postgresql+psycopg://nobody@127.0.0.1:1/none"])
    assert res.exit_code == 2 and "cannot open results database" in res.stderr


def test_differences_md_leaves_out_outcomes_undefined_at_the_reference(tmp_path, canned_experiment):
    tidy = canned()
    undefined = (tidy["outcome"] == "market.annual_churn") & (tidy["price"] == "30")
    tidy.loc[undefined, "value"] = float("nan")  # e.g. a win-back rate where the reference runs no campaign
    write_report_files(tidy, canned_experiment, tmp_path)
    diff_md = (tmp_path / "differences.md").read_text()
    assert "Left out, as no pair has a value: market.annual_churn." in diff_md
    assert "| market.annual_churn |" not in diff_md and "| focal.share_end |" in diff_md
    assert (pd.read_csv(tmp_path / "differences.csv")["outcome"] == "market.annual_churn").any()  # csv keeps all


def test_the_excel_workbook_holds_the_summary_the_differences_and_every_run_with_units(canned_experiment, tmp_path):
    paths = write_report_files(canned(), canned_experiment, tmp_path, xlsx=True)
    assert paths[-1] == tmp_path / "tiny_price.xlsx"
    sheets = pd.read_excel(paths[-1], sheet_name=None, dtype={"price": str, "market": str})
    assert list(sheets) == ["summary", "differences", "runs", "about"]
    summary = sheets["summary"]
    assert list(summary.columns[:2]) == ["price", "market"] and len(summary) == 4
    assert "focal.share_end: mean (fraction)" in summary.columns
    assert "market.annual_churn: 95% CI high (defections per customer-year)" in summary.columns
    expected = summary_table(canned(), ["price", "market"])
    mean = expected[(expected["price"] == "30") & (expected["market"] == "competitive")
                    & (expected["outcome"] == "focal.share_end")]["mean"].item()
    got = summary[(summary["price"] == "30") & (summary["market"] == "competitive")]
    assert got["focal.share_end: mean (fraction)"].item() == pytest.approx(mean)
    differences = sheets["differences"]
    assert "focal.share_end: P(difference < 0) (fraction)" in differences.columns
    assert set(differences["reference"]) == {"price=30"}
    runs = sheets["runs"]
    assert len(runs) == 16 and "focal.share_end: value (fraction)" in runs.columns
    about = dict(zip(sheets["about"]["field"], sheets["about"]["value"], strict=True))
    assert about["experiment"] == "tiny_price" and about["reference"] == "price=30"


def test_a_decision_chart_shows_each_arms_paired_difference_its_spread_and_the_chance_of_a_loss(tmp_path):
    rng = np.random.default_rng(8)
    records = []
    for r in range(20):
        base = rng.normal(1_000_000, 200_000)  # common random numbers: the arms share each replication's luck
        for arm, effect in (("none", 0.0), ("points programme", 60_000.0), ("cashback", -90_000.0)):
            records.append({"programme": arm, "replication": r, "outcome": "focal.npv",
                            "value": base + effect + rng.normal(0, 15_000)})
    tidy = pd.DataFrame(records)
    tidy["programme"] = pd.Categorical(tidy["programme"], ["none", "points programme", "cashback"], ordered=True)
    tidy["outcome"] = pd.Categorical(tidy["outcome"])
    diffs = report.paired_differences(tidy, ["programme"], {"programme": "none"}, risk=True)
    points = diffs[diffs["programme"] == "points programme"].iloc[0]
    assert points["ci_low"] > 0 and points["p_negative"] < 0.2
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = report.decision_chart(diffs, "focal.npv", ["programme"], title="programmes")
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [t for t in fig.findobj(match=lambda a: hasattr(a, "get_text") and a.get_visible()) if t.get_text()]
    said = " ".join(t.get_text() for t in texts)
    assert "P(loss) = " in said and "difference from programme=none" in said and "focal firm: NPV" in said
    for t in texts:  # every title, label and annotation inside the figure: nothing clipped
        extent = t.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, t.get_text()
        assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, t.get_text()
    path = report.decision_figure(diffs, "focal.npv", ["programme"], tmp_path / "decision.png")
    assert path.read_bytes()[:8] == PNG
    assert report.is_money("focal.npv") and not report.is_money("focal.share_end")


def test_every_pair_of_design_points_is_compared_on_request(canned_experiment, tmp_path):
    paths = write_report_files(canned(), canned_experiment, tmp_path, compare_all=True, xlsx=True)
    assert tmp_path / "comparisons.csv" in paths and tmp_path / "comparisons.md" in paths
    pairs = pd.read_csv(tmp_path / "comparisons.csv")
    assert len(pairs) == 6 * 2  # 4 design points: 6 pairs, 2 outcomes
    row = pairs[(pairs["a"] == "price=30, market=competitive") & (pairs["b"] == "price=34, market=competitive")
                & (pairs["outcome"] == "focal.share_end")].iloc[0]
    tidy = canned()
    share = tidy[(tidy["outcome"] == "focal.share_end") & (tidy["market"] == "competitive")]
    by_price = share.pivot(index="replication", columns="price", values="value")
    d = (by_price["34"] - by_price["30"]).dropna()
    assert row["mean"] == pytest.approx(d.mean()) and row["p_negative"] == pytest.approx((d < 0).mean())
    assert "comparisons" in pd.read_excel(tmp_path / "tiny_price.xlsx", sheet_name=None)
    res = CliRunner().invoke(app, ["report", str(TINY), "--compare", "some", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "the only comparison on request is 'all'" in res.stderr


def test_money_is_labelled_with_the_scenarios_currency(canned_experiment, tmp_path):
    """A scenario naming its currency has money headed and labelled with it in the workbook and the figures; one
    that does not keeps "money"."""
    import dataclasses

    tidy = canned().replace({"outcome": {"focal.share_end": "focal.npv"}})
    plain = dataclasses.replace(canned_experiment, spec=canned_experiment.spec.model_copy(
        update={"outcomes": ["focal.npv", "market.annual_churn"]}))
    euro = dataclasses.replace(plain, base=plain.base.with_changes({"economics.currency": "EUR"}))
    for experiment, label in ((plain, "money"), (euro, "EUR")):
        folder = tmp_path / label
        write_report_files(tidy, experiment, folder, xlsx=True)
        summary = pd.read_excel(folder / "tiny_price.xlsx", sheet_name="summary")
        assert f"focal.npv: mean ({label})" in summary.columns
        assert "market.annual_churn: mean (defections per customer-year)" in summary.columns
    assert describe_outcome("focal.npv", "EUR") == "focal firm: NPV of profit at the end of the warm-up (EUR)"
    assert describe_outcome("focal.npv") == "focal firm: NPV of profit at the end of the warm-up (money)"
    assert describe_outcome("focal.npv - focal.profit", "EUR").startswith(
        "difference within the run: focal firm: NPV of profit at the end of the warm-up (EUR)")
    diffs = paired_differences(tidy, ["price", "market"], {"price": "30"}, risk=True)
    chart = report.decision_chart(diffs, "focal.npv", ["price", "market"], currency="EUR")
    assert "(EUR)" in chart._suptitle.get_text()
