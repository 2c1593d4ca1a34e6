"""Tests of the sensitivity analysis of sampled designs: the estimators reproduce known indices of test functions
(Ishigami's exact Sobol' indices) when fed the report's tidy table, inert factors come out inert, replication
noise is measured, and the report writes its files; end to end on the model at a tiny size."""

import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.design import DesignSpec, Factor, Sampling, draw_sampling, load_experiment
from loyaltysim.experiments.storage import Registry, code_identity, run_key
from loyaltysim.experiments.sweep import run_sweep
from loyaltysim.reporting.report import ReportError, collect_results, write_report, write_report_files
from loyaltysim.reporting.sensitivity import analyse, morris_step, point_means, sensitivity_table

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "experiments" / "scenarios" / "baseline.toml"

# Ishigami (a = 7, b = 0.1) on [-pi, pi]^3: the exact indices (Saltelli et al. 2008, Global Sensitivity Analysis)
A, B = 7.0, 0.1
VARIANCE = A**2 / 8 + B * math.pi**4 / 5 + B**2 * math.pi**8 / 18 + 0.5
V1 = 0.5 * (1 + B * math.pi**4 / 5) ** 2
V2 = A**2 / 8
V13 = B**2 * math.pi**8 * (1 / 18 - 1 / 50)
S1_EXACT = {"x1": V1 / VARIANCE, "x2": V2 / VARIANCE, "x3": 0.0, "x4": 0.0}
ST_EXACT = {"x1": (V1 + V13) / VARIANCE, "x2": V2 / VARIANCE, "x3": V13 / VARIANCE, "x4": 0.0}
TOLERANCE = 0.03  # absolute, on every index, at 2048 base samples


def ishigami(x: pd.DataFrame) -> np.ndarray:
    return np.sin(x["x1"]) + A * np.sin(x["x2"]) ** 2 + B * x["x3"] ** 4 * np.sin(x["x1"])


def factors(k: int = 4) -> list[Factor]:
    """x1..xk on [-pi, pi]; x4 is a factor the test functions do not read."""
    return [Factor(name=f"x{i}", path="unused.path", bounds=[-math.pi, math.pi]) for i in range(1, k + 1)]


def tidy_of(sampling: Sampling, function, replications: int = 1, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """The report's tidy table (a numeric column per factor, design, replication, outcome, value, key, run_dir)
    of ``function`` at the design's points, with Gaussian noise of sd ``noise`` added to each replication."""
    x = pd.DataFrame(sampling.values())
    rng = np.random.default_rng(seed)
    frames = []
    for r in range(replications):
        y = function(x) + (rng.normal(0.0, noise, len(x)) if noise else 0.0)
        frames.append(x.assign(design=range(len(x)), replication=r, outcome="y", value=y, key="", run_dir=""))
    return pd.concat(frames, ignore_index=True).sort_values(["design", "replication"], kind="stable")


def index(result, name: str, factor: str) -> pd.Series:
    rows = result.indices[(result.indices["index"] == name) & (result.indices["factor"] == factor)]
    assert len(rows) == 1
    return rows.iloc[0]


# ------------------------------------------------------------------------------------------ known answers


def test_sobol_indices_of_the_ishigami_function_are_its_exact_ones():
    sampling = draw_sampling(DesignSpec(kind="saltelli", seed=2024, samples=2048), factors())
    result = analyse(tidy_of(sampling, ishigami), sampling, "y", 0.95)
    assert result.note == "" and result.points == 2048 * 6 and math.isnan(result.noise_share)
    for factor in ("x1", "x2", "x3", "x4"):
        s1, st = index(result, "S1", factor), index(result, "ST", factor)
        assert s1["estimate"] == pytest.approx(S1_EXACT[factor], abs=TOLERANCE), factor
        assert st["estimate"] == pytest.approx(ST_EXACT[factor], abs=TOLERANCE), factor
        assert s1["ci_low"] <= S1_EXACT[factor] <= s1["ci_high"], factor
        if factor != "x4":  # an inert factor's ST is exactly 0 with an interval of no width
            assert st["ci_low"] <= ST_EXACT[factor] <= st["ci_high"], factor


def test_an_inert_factor_gets_no_index_and_second_order_finds_the_only_interaction():
    sampling = draw_sampling(DesignSpec(kind="saltelli", seed=7, samples=1024, second_order=True), factors())
    result = analyse(tidy_of(sampling, ishigami), sampling, "y", 0.95)
    inert = index(result, "ST", "x4")
    assert abs(inert["estimate"]) < 0.01 and inert["ci_low"] <= 0.0 <= inert["ci_high"]
    s1 = index(result, "S1", "x4")
    assert s1["ci_low"] <= 0.0 <= s1["ci_high"]
    pairs = result.indices[result.indices["index"] == "S2"].set_index("factor")
    assert len(pairs) == 6
    assert pairs.loc["x1 x x3", "estimate"] == pytest.approx(ST_EXACT["x3"], abs=0.06)  # x1-x3: all of x3's
    assert pairs.loc["x1 x x3", "ci_low"] > 0.1
    for pair in ("x1 x x2", "x2 x x3", "x1 x x4"):
        assert pairs.loc[pair, "ci_low"] <= 0.0 <= pairs.loc[pair, "ci_high"], pair


def test_morris_ranks_the_influential_factors_above_the_inert_one():
    sampling = draw_sampling(DesignSpec(kind="morris", seed=3, trajectories=40), factors())
    result = analyse(tidy_of(sampling, ishigami), sampling, "y", 0.95)
    mu_star = result.indices[result.indices["index"] == "mu_star"].set_index("factor")["estimate"]
    assert mu_star["x4"] == 0.0 and min(mu_star["x1"], mu_star["x2"], mu_star["x3"]) > 1.0
    assert index(result, "mu_star", "x1")["ci_low"] > 0.0
    assert index(result, "mu", "x2")["estimate"] < mu_star["x2"]  # sin^2: the effects of x2 change sign
    # a linear function: every elementary effect is the slope times the range
    linear = analyse(tidy_of(sampling, lambda x: 3 * x["x1"] - x["x2"]), sampling, "y", 0.95)
    mu_star = linear.indices[linear.indices["index"] == "mu_star"].set_index("factor")["estimate"]
    assert mu_star["x1"] == pytest.approx(3 * 2 * math.pi) and mu_star["x2"] == pytest.approx(2 * math.pi)
    assert index(linear, "sigma", "x1")["estimate"] == pytest.approx(0.0, abs=1e-9)


def test_regression_coefficients_of_a_linear_function_are_its_standardized_slopes():
    sampling = draw_sampling(DesignSpec(kind="lhs", seed=5, samples=256), factors(3))
    result = analyse(tidy_of(sampling, lambda x: 2 * x["x1"] + x["x2"]), sampling, "y", 0.95)
    assert result.r2 == pytest.approx(1.0)
    expected = {"x1": 2 / math.sqrt(5), "x2": 1 / math.sqrt(5), "x3": 0.0}
    for factor, value in expected.items():
        src = index(result, "SRC", factor)
        assert src["estimate"] == pytest.approx(value, abs=0.03), factor
        assert src["ci_low"] <= src["estimate"] <= src["ci_high"]
    sobol = draw_sampling(DesignSpec(kind="sobol", seed=5, samples=128), factors(3))
    noisy = analyse(tidy_of(sobol, lambda x: x["x1"], replications=3, noise=2.0), sobol, "y", 0.95)
    assert index(noisy, "SRC", "x1")["ci_low"] > 0.5 and noisy.r2 < 1.0 - 0.5 * noisy.noise_share
    x3 = index(noisy, "SRC", "x3")
    assert x3["ci_low"] <= 0.0 <= x3["ci_high"]


# ------------------------------------------------------------------------------------------ replication noise


def test_replication_noise_share_and_floor_say_what_noise_alone_gives():
    sampling = draw_sampling(DesignSpec(kind="saltelli", seed=11, samples=512), factors())
    noise, replications = 1.5, 4
    result = analyse(tidy_of(sampling, ishigami, replications, noise), sampling, "y", 0.95)
    expected = noise**2 / replications / VARIANCE
    assert result.replications == replications
    assert result.noise_share == pytest.approx(expected, rel=0.15)
    # the inert factor's ST is about the noise share, not 0: not above noise
    inert = index(result, "ST", "x4")
    assert inert["estimate"] == pytest.approx(result.noise_share, rel=0.3) and inert["ci_low"] < result.noise_share
    assert index(result, "ST", "x3")["ci_low"] > 3 * result.noise_share  # a real effect clears it
    morris = draw_sampling(DesignSpec(kind="morris", seed=3, trajectories=60), factors())
    screened = analyse(tidy_of(morris, ishigami, replications, noise), morris, "y", 0.95)
    floor = math.sqrt(2 * noise**2 / replications) * math.sqrt(2 / math.pi) / morris_step(4)
    assert screened.noise_floor == pytest.approx(floor, rel=0.15)
    inert = index(screened, "mu_star", "x4")
    assert inert["ci_low"] <= screened.noise_floor <= inert["ci_high"]
    assert index(screened, "mu_star", "x2")["ci_low"] > 3 * screened.noise_floor


def test_the_value_analysed_is_the_mean_over_replications_without_nans():
    tidy = pd.DataFrame({"design": [0, 0, 0, 1, 1, 1], "replication": [0, 1, 2] * 2, "outcome": "y",
                         "value": [1.0, 3.0, np.nan, 4.0, 4.0, 7.0]})
    means, noise, reps = point_means(tidy, "y", 2)
    assert means.tolist() == [2.0, 5.0] and reps == 3
    assert noise == pytest.approx((2.0 / 2 + 3.0 / 3) / 2)  # each point's variance over its count of values


def test_an_outcome_missing_at_a_point_or_constant_is_not_analysed():
    sampling = draw_sampling(DesignSpec(kind="morris", seed=1, trajectories=4), factors(2))
    tidy = tidy_of(sampling, lambda x: x["x1"])
    tidy.loc[tidy["design"] == 3, "value"] = np.nan
    assert analyse(tidy, sampling, "y", 0.95).note.startswith("not analysed: 1 of 12 design point(s) have no value")
    constant = analyse(tidy_of(sampling, lambda x: 0 * x["x1"] + 1.0), sampling, "y", 0.95)
    assert constant.note == "not analysed: the outcome takes the same value at every design point"
    assert constant.indices.empty


# ------------------------------------------------------------------------------------------ the report


def sampled_file(tmp_path: Path, design: str, name: str = "sampled", size: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'''
schema_version = 1
name = "{name}"
scenario = "{BASELINE}"
replications = 2
root_seed = 11
horizon = "16 weeks"
warmup = "4 weeks"
population = 150
outcomes = ["market.annual_churn", "market.satisfied_switcher_share", "focal.share_end"]
{size}
[design]
{design}

[[factors]]
name = "switching_cost"
path = "market.customers.switching_cost"
bounds = [0.1, 1.0]

[[factors]]
name = "attention"
path = "market.customers.offer_attention"
bounds = [0.1, 0.9]

[[factors]]
name = "managers"
path = "market.firms[0].relationship_managers"
bounds = [0, 30]
type = "integer"
''', encoding="utf-8")
    return path


def test_the_report_of_a_saltelli_design_writes_indices_table_and_figures(tmp_path):
    exp = load_experiment(sampled_file(tmp_path, 'kind = "saltelli"\nseed = 4\nsamples = 32\nsecond_order = true'))
    tidy = tidy_of(exp.sampling, lambda x: 0.3 * x["switching_cost"] + x["attention"] ** 2, replications=2,
                   noise=0.01)
    tidy = pd.concat([tidy.assign(outcome=o) for o in exp.outcomes], ignore_index=True)
    paths = write_report_files(tidy, exp, tmp_path / "report")
    names = {p.relative_to(tmp_path / "report").as_posix() for p in paths}
    assert {"sensitivity.md", "sensitivity.csv", "summary.md", "figures/sensitivity_market.annual_churn.png",
            "figures/market.annual_churn.png"} <= names
    table = pd.read_csv(tmp_path / "report" / "sensitivity.csv")
    assert list(table.columns) == ["outcome", "factor", "index", "estimate", "ci_low", "ci_high", "points",
                                   "replications", "noise_share"]
    assert set(table["index"]) == {"S1", "ST", "S2"} and set(table["outcome"]) == set(exp.outcomes)
    st = table[(table["index"] == "ST") & (table["outcome"] == "focal.share_end")].set_index("factor")["estimate"]
    assert st["attention"] > st["switching_cost"] > 0.05 > st["managers"]
    text = (tmp_path / "report" / "sensitivity.md").read_text(encoding="utf-8")
    assert "32 base samples x (8) = 256 design points, second order included, design seed 4" in text
    assert "| factor | first-order S1 | first-order S1 95% CI | total ST | total ST 95% CI |" in text
    assert "Second-order indices" in text and "noise share" in text
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert list(summary.columns[:4]) == ["design", "switching_cost", "attention", "managers"] and len(summary) == 768
    for png in (tmp_path / "report" / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_tiny_sampled_experiment_runs_end_to_end_on_the_model(tmp_path):
    exp = load_experiment(sampled_file(tmp_path, 'kind = "morris"\nseed = 9\ntrajectories = 2'))
    assert len(exp.design) == 8 and exp.runs == 16
    db = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    result = run_sweep(exp, tmp_path, db, workers=2, executor_factory=lambda: ThreadPoolExecutor(2),
                       stream=io.StringIO())
    assert not result.failed and result.complete
    written = write_report(exp, tmp_path, db)
    assert written.missing == 0
    with Registry(db) as registry:
        tidy, missing = collect_results(exp, registry, tmp_path)
    assert missing == 0 and len(tidy) == 16 * 3
    assert tidy["managers"].dtype.kind == "i" and tidy["switching_cost"].dtype.kind == "f"
    first = tidy[tidy["design"] == 0].iloc[0]
    assert first["switching_cost"] == exp.design[0].values["switching_cost"]
    # common random numbers: replication r of every point ran on child r of the root seed, keyed as a grid's run
    code = code_identity()
    for row in tidy.drop_duplicates(["design", "replication"]).itertuples():
        point = exp.design[row.design]
        assert row.key == run_key(point.effective, exp.root_seed, (row.replication,), code)
    text = (written.folder / "sensitivity.md").read_text(encoding="utf-8")
    assert "## market.annual_churn" in text and "noise floor of mu*" in text
    assert "| factor | mu* | mu* 95% CI | sigma | mu |" in text
    figure = written.folder / "figures" / "sensitivity_market.annual_churn.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_shipped_sensitivity_example_is_a_morris_design_of_the_baseline():
    exp = load_experiment(REPO / "experiments" / "sensitivity_baseline.toml")
    assert exp.kind == "morris" and exp.base.name == "baseline"
    assert 4 <= len(exp.factors) <= 6 and exp.runs <= 800
    assert {"market.annual_churn", "market.satisfied_switcher_share"} <= set(exp.outcomes)


# ------------------------------------------------------------------------------------------ arms


def crossed_tidy(sampling: Sampling, arms: dict[str, list[str]], function, replications: int = 1,
                 noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """The tidy table of a sampled design crossed with ``arms``: design point i * n + j is row i of the sampling at
    combination j of the arms' labels; ``function(x, arm)`` gives the rows' values in one arm."""
    import itertools

    combinations = [dict(zip(arms, c, strict=True)) for c in itertools.product(*arms.values())]
    x = pd.DataFrame(sampling.values())
    rng = np.random.default_rng(seed)
    frames = []
    for j, arm in enumerate(combinations):
        for r in range(replications):
            y = function(x, arm) + (rng.normal(0.0, noise, len(x)) if noise else 0.0)
            frames.append(x.assign(**arm, design=np.arange(len(x)) * len(combinations) + j, replication=r,
                                   outcome="y", value=y, key="", run_dir=""))
    return pd.concat(frames, ignore_index=True).sort_values(["design", "replication"], kind="stable")


def test_each_arm_is_analysed_over_its_own_points_in_row_order():
    sampling = draw_sampling(DesignSpec(kind="saltelli", seed=13, samples=256), factors(3))
    arms = {"firm": ["basic", "latent"]}

    def function(x, arm):  # the basic arm moves with x1 alone, the latent one with x2 alone
        return x["x1"] if arm["firm"] == "basic" else 2 * x["x2"] + 5

    tidy = crossed_tidy(sampling, arms, function)
    points = len(sampling.unit)
    basic = analyse(tidy, sampling, "y", 0.95, design=[2 * i for i in range(points)], arm={"firm": "basic"})
    latent = analyse(tidy, sampling, "y", 0.95, design=[2 * i + 1 for i in range(points)], arm={"firm": "latent"})
    assert basic.arm == {"firm": "basic"} and basic.points == points and basic.note == ""
    for result, moving in ((basic, "x1"), (latent, "x2")):
        for factor in ("x1", "x2", "x3"):
            want = 1.0 if factor == moving else 0.0
            assert index(result, "S1", factor)["estimate"] == pytest.approx(want, abs=0.02), (result.arm, factor)
            assert index(result, "ST", factor)["estimate"] == pytest.approx(want, abs=0.02), (result.arm, factor)
    # design points 0 .. n - 1 (the default) mix the arms' points, and the indices with them
    mixed = analyse(tidy, sampling, "y", 0.95)
    assert abs(index(mixed, "ST", "x1")["estimate"] - 1.0) > 0.1 and mixed.arm == {}
    with pytest.raises(ValueError, match="one per row"):
        analyse(tidy, sampling, "y", 0.95, design=[0, 2])
    table = sensitivity_table([basic, latent])
    assert list(table.columns[:3]) == ["outcome", "firm", "factor"] and set(table["firm"]) == {"basic", "latent"}
    regression = draw_sampling(DesignSpec(kind="lhs", seed=5, samples=64), factors(2))
    tidy = crossed_tidy(regression, arms, function)
    src = analyse(tidy, regression, "y", 0.95, design=[2 * i + 1 for i in range(64)], arm={"firm": "latent"})
    assert index(src, "SRC", "x2")["estimate"] == pytest.approx(1.0) and src.r2 == pytest.approx(1.0)


def crossed_file(tmp_path: Path, design: str, head: str = "") -> Path:
    path = tmp_path / "crossed.toml"
    path.write_text(f'''
schema_version = 1
name = "crossed"
scenario = "{BASELINE}"
replications = 2
root_seed = 11
horizon = "16 weeks"
warmup = "4 weeks"
population = 80
outcomes = ["market.annual_churn", "focal.share_end"]
{head}
[design]
{design}

[[factors]]
name = "firm"
path = "policy.investments"
values = [[], [{{ attribute = "perks", budget = "1000 per month" }}]]
labels = ["none", "perks/latent"]

[[factors]]
name = "switching_cost"
path = "market.customers.switching_cost"
bounds = [0.1, 1.0]

[[factors]]
name = "memory"
paths = ["market.customers.satisfaction_memory", "market.customers.learning_half_life"]
bounds = [4, 12]
unit = "weeks"
''', encoding="utf-8")
    return path


def test_the_report_of_a_crossed_design_analyses_and_draws_each_arm(tmp_path):
    from loyaltysim.reporting import report

    @report.register_findings("crossed_probe")
    def probe(results, experiment):
        gap = results[results["firm"] == "perks/latent"]["value"].mean() - results[results["firm"] == "none"][
            "value"].mean()
        return [{"effect": "investing changes the outcome", "holds": gap > 0, "evidence": f"gap {gap:.3g}",
                 "arms": ", ".join(experiment.arms)}]

    try:
        exp = load_experiment(crossed_file(tmp_path, 'kind = "morris"\nseed = 3\ntrajectories = 6',
                                           head='findings = ["crossed_probe"]'))
        assert exp.arms == ["firm"] and len(exp.design) == 6 * 3 * 2
        tidy = crossed_tidy(exp.sampling, exp.levels, lambda x, arm: x["switching_cost"] * (
            1.0 if arm["firm"] == "none" else 0.0) + x["memory"] / 10, replications=2, noise=0.001)
        tidy = pd.concat([tidy.assign(outcome=o) for o in exp.outcomes], ignore_index=True)
        tidy["firm"] = pd.Categorical(tidy["firm"], categories=exp.levels["firm"], ordered=True)
        tidy = tidy[[*exp.factors, "design", "replication", "outcome", "value", "key", "run_dir"]]
        paths = write_report_files(tidy, exp, tmp_path / "report")
    finally:
        report.unregister_findings("crossed_probe")
    folder = tmp_path / "report"
    names = {p.relative_to(folder).as_posix() for p in paths}
    for outcome in exp.outcomes:
        assert {f"figures/sensitivity_{outcome}_none.png", f"figures/sensitivity_{outcome}_perks_latent.png",
                f"figures/{outcome}.png"} <= names
    assert not any(n == f"figures/sensitivity_{outcome}.png" for n in names for outcome in exp.outcomes)
    table = pd.read_csv(folder / "sensitivity.csv")
    assert list(table.columns) == ["outcome", "firm", "factor", "index", "estimate", "ci_low", "ci_high", "points",
                                   "replications", "noise_share"]
    assert set(table["points"]) == {18} and set(table["firm"]) == {"none", "perks/latent"}
    mu = table[table["index"] == "mu_star"].set_index(["outcome", "firm", "factor"])["estimate"]
    assert mu["focal.share_end", "none", "switching_cost"] > 0.5
    assert mu["focal.share_end", "perks/latent", "switching_cost"] < 0.05  # the latent arm ignores it
    assert mu["focal.share_end", "perks/latent", "memory"] == pytest.approx(0.8, abs=0.05)
    text = (folder / "sensitivity.md").read_text(encoding="utf-8")
    assert text.count("## market.annual_churn") == 1 and text.count("### firm=none") == 2
    assert text.count("### firm=perks/latent") == 2
    assert "6 trajectories x (2 + 1) = 18 sampled points" in text and "Arms: firm (none, perks/latent)" in text
    assert "36 design points in all" in text
    assert "memory (market.customers.satisfaction_memory and market.customers.learning_half_life" in text
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary.columns[:4]) == ["design", "firm", "switching_cost", "memory"] and len(summary) == 72
    results = pd.read_csv(folder / "results.csv")
    assert list(results.columns[:3]) == ["firm", "switching_cost", "memory"]
    findings = (folder / "findings.md").read_text(encoding="utf-8")
    assert "## crossed_probe: 0 of 1 hold" in findings and "| investing changes the outcome | NO | firm |" in findings
    for png in (folder / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ReportError, match="--compare all"):
        write_report_files(tidy, exp, tmp_path / "again", compare_all=True)
