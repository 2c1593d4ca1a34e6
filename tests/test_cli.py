"""Tests of the ``loyaltysim`` command, run for real in subprocesses (``python -m loyaltysim.cli``).

Each subprocess costs about a second and a half, mostly imports, so the runs are shared through module-scoped
fixtures and independent ones are started side by side.  Every run writes under a temp directory (``--out``),
never into the repository's ``results/``.
"""

import json
import math
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

import loyaltysim
from cli_process import TIMEOUT, cli_args, finish, ok, start
from cli_process import clean_env as _env
from loyaltysim.experiments.storage import DB_ENV_VAR, Registry, code_identity
from loyaltysim.scenario import load_scenario, scenario_from_dict

REPO = Path(__file__).resolve().parents[1]
FIRMS = ("Focal", "Rival A", "Rival B")
TABLES = ("firms", "market", "defections", "surveys", "customers")

# ------------------------------------------------------------------------------------------ helpers


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value), value
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(data: dict) -> str:
    """Minimal TOML writer for scenario files: nested tables get headers, everything else is inline."""
    lines: list[str] = []

    def table(d: dict, path: list[str]) -> None:
        if path:
            lines.append(f"\n[{'.'.join(_toml_key(p) for p in path)}]")
        for k, v in d.items():
            if not isinstance(v, dict):
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in d.items():
            if isinstance(v, dict):
                table(v, [*path, k])

    table(data, [])
    text = "\n".join(lines) + "\n"
    assert tomllib.loads(text) == data  # the writer is only trusted as far as it round-trips
    return text


# the baseline scenario (see the scenario_data fixture), shrunk: 300 customers, 20 weeks of which 4 are warm-up
SMALL = {"market__customers__population": 300, "time__horizon": "20 weeks", "time__warmup": "4 weeks"}


def write_scenario(path: Path, data: dict) -> Path:
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def cli(*args, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return finish(start(*args, cwd=cwd, env=env))


def registry_rows(url: str) -> list:
    with Registry(url) as reg:
        return reg.runs()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# ------------------------------------------------------------------------------------------ shared runs


@dataclass
class Runs:
    base: Path  # the working directory of every run
    scenario: Path
    out: Path  # OUT of the first run and of its identical repeat
    first: subprocess.CompletedProcess  # table output, --seed 3 --steps 24
    first_manifest_stat: os.stat_result
    rows_after_first: list
    repeat: subprocess.CompletedProcess  # the same command again
    rows_after_repeat: list
    env_out: Path
    env_db: Path
    env_run: subprocess.CompletedProcess  # the same run, --json, registry from $LOYALTYSIM_DB, another OUT
    other_seed: subprocess.CompletedProcess  # --json, --seed 4
    other_steps: subprocess.CompletedProcess  # --json, --steps 26, a relative --out

    @property
    def key(self) -> str:
        return summary_of(self.env_run)["run_key"]

    @property
    def run_dir(self) -> Path:
        return self.out / "runs" / self.key[:16]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, scenario_data) -> Runs:
    base = tmp_path_factory.mktemp("cli-runs")
    scenario = write_scenario(base / "small.toml", scenario_data(**SMALL))
    out, env_out, env_db = base / "out", base / "env-out", base / "elsewhere" / "env-registry.sqlite"
    same = ("run", scenario, "--seed", 3, "--steps", 24)
    procs = [  # independent runs, side by side
        start(*same, "--out", out, cwd=base),
        start(*same, "--out", env_out, "--json", cwd=base, env=_env(**{DB_ENV_VAR: sqlite_url(env_db)})),
        start("run", scenario, "--seed", 4, "--steps", 24, "--out", base / "out-seed", "--json", cwd=base),
        start("run", scenario, "--seed", 3, "--steps", 26, "--out", "out-steps", "--json", cwd=base),
    ]
    first, env_run, other_seed, other_steps = [ok(p) for p in [finish(p) for p in procs]]
    db = sqlite_url(out / "registry.sqlite")
    (run_dir,) = (out / "runs").iterdir()
    stat = (run_dir / "manifest.json").stat()
    rows_after_first = registry_rows(db)
    repeat = ok(cli(*same, "--out", out, cwd=base))
    return Runs(base, scenario, out, first, stat, rows_after_first, repeat, registry_rows(db), env_out, env_db,
                env_run, other_seed, other_steps)


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)


def manifest_of(run_dir: Path | str) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))


def table_rows(text: str) -> dict[str, list[str]]:
    """The summary tables' cells by firm name (one column per firm, three firms a table): the firm's name, then its
    cells in row order (customers, share, annual churn, ...)."""
    firms: dict[str, list[str]] = {}
    columns: list[str] = []
    for line in text.splitlines():
        sep = "┃" if "┃" in line else "│"
        cells = [c.strip() for c in line.split(sep)][1:-1]
        if len(cells) < 2:
            continue
        if sep == "┃" and cells[0] == "firm":  # a table's header: its firms
            columns = [c.removesuffix(" (focal)") for c in cells[1:]]
            for name in columns:
                firms[name] = [name]
        elif sep == "│" and columns:
            for name, cell in zip(columns, cells[1:], strict=True):
                firms[name].append(cell)
    return firms


def test_the_run_summary_fits_80_columns_and_stacks_firms_three_a_table(tmp_path):
    from loyaltysim.cli import FIRMS_PER_TABLE, SUMMARY_ROWS

    data = tomllib.loads((REPO / "experiments" / "scenarios" / "baseline.toml").read_text())
    extra = [dict(data["market"]["firms"][1], name=f"Rival {c}") for c in "CDE"]
    data["market"]["firms"] += extra
    data["market"]["customers"]["population"] = 300
    data["time"] = {"step": "week", "horizon": "12 weeks", "warmup": "4 weeks"}
    path = tmp_path / "six.toml"
    path.write_text(tomli_w.dumps(data))
    proc = finish(start("run", path, "--out", tmp_path / "out", cwd=tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("run ") and " stored in " in lines[-1]  # a path is never broken, whatever its length
    assert max(len(line) for line in lines[:-1]) <= 80
    rows = table_rows(proc.stdout)
    assert list(rows) == ["Focal", "Rival A", "Rival B", "Rival C", "Rival D", "Rival E"]
    assert all(len(cells) == 1 + len(SUMMARY_ROWS) for cells in rows.values())
    assert proc.stdout.count("┃ firm") == 6 // FIRMS_PER_TABLE


# ------------------------------------------------------------------------------------------ happy path


def test_run_prints_a_summary_table_naming_every_firm(runs):
    text = runs.first.stdout
    assert runs.first.stderr == ""
    assert "baseline: 20 weeks reported (after 4 of warm-up)" in text
    for column in ("firm", "customers at the end", "share at the end", "annual churn", "mean satisfaction", "NPS",
                   "revenue", "profit", "NPV"):
        assert column in text
    assert list(table_rows(text)) == list(FIRMS)
    assert "Focal (focal)" in text and "Rival A (focal)" not in text
    assert "defections:" in text
    assert f"run {runs.key[:16]} stored in {runs.run_dir}" in text


def test_table_agrees_with_the_json_summary(runs):
    summary = summary_of(runs.env_run)  # the same run, stored elsewhere
    rows = table_rows(runs.first.stdout)
    for f in summary["firms"]:
        assert rows[f["firm"]][1] == str(f["customers_end"])  # the customers column
        assert rows[f["firm"]][2] == format(f["share_end"], ".1%")
    assert f"defections: {summary['market']['defections']} (" in runs.first.stdout


def test_run_json_is_the_only_thing_on_stdout(runs):
    for proc in (runs.env_run, runs.other_seed, runs.other_steps):
        summary = json.loads(proc.stdout)  # the whole of stdout parses: nothing else is printed there
        assert proc.stdout.startswith("{") and proc.stdout.rstrip("\n").endswith("}")
        assert proc.stderr == ""
        assert {"run_key", "run_dir", "scenario", "steps", "warmup_steps", "firms", "market"} <= set(summary)
        assert [f["firm"] for f in summary["firms"]] == list(FIRMS)
        assert re.fullmatch(r"[0-9a-f]{64}", summary["run_key"])
        assert Path(summary["run_dir"]).name == summary["run_key"][:16]
        assert (runs.base / summary["run_dir"] / "manifest.json").is_file()  # relative to the working directory


def test_run_dir_holds_manifest_and_tables(runs):
    summary = summary_of(runs.env_run)
    assert sorted(p.name for p in (runs.out / "runs").iterdir()) == [runs.run_dir.name]  # no temp dirs left
    assert sorted(p.name for p in runs.run_dir.iterdir()) == sorted(
        ["manifest.json", *(f"{t}.parquet" for t in TABLES)])
    tables = {t: pd.read_parquet(runs.run_dir / f"{t}.parquet") for t in TABLES}
    firms, market, defections, surveys = (tables[t] for t in TABLES[:4])
    assert len(firms) == 24 * 3 and set(firms["firm"]) == set(FIRMS)
    assert sorted(firms["step"].unique()) == list(range(1, 25))
    assert list(market["step"]) == list(range(1, 25))
    assert len(defections) > 0 and set(defections["firm"]) <= set(FIRMS)
    assert len(surveys) > 0 and set(surveys["firm"]) <= set(FIRMS)
    assert summary["market"]["defections"] == int((defections["step"] > 4).sum())
    last = firms[firms["step"] == 24].set_index("firm")["customers"]
    assert {f["firm"]: f["customers_end"] for f in summary["firms"]} == last.to_dict()


def test_manifest_records_the_effective_scenario_seed_and_code(runs):
    manifest = manifest_of(runs.run_dir)
    assert manifest["run_key"] == runs.key
    effective = load_scenario(runs.scenario).with_overrides(steps=24).to_dict()
    assert manifest["scenario"] == effective
    # the override is in it: 24 steps instead of the file's 20, everything else as written
    again = scenario_from_dict(manifest["scenario"])
    assert (again.steps(), again.warmup_steps(), again.market.customers.population) == (24, 4, 300)
    written = tomllib.loads(runs.scenario.read_text(encoding="utf-8"))
    assert {k: v for k, v in manifest["scenario"]["time"].items() if k != "horizon"} == {
        k: v for k, v in written["time"].items() if k != "horizon"}
    assert manifest["seed"] == {"entropy": 3, "spawn_key": []}
    assert manifest["package"] == {"name": "loyaltysim", "version": loyaltysim.__version__}
    code = code_identity.__wrapped__()  # computed afresh: another test may have left a stale cached value
    assert manifest["code"]["commit"] == code.commit
    assert manifest["code"]["dirty"] is code.dirty
    if code.commit is not None:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        assert manifest["code"]["commit"] == head.stdout.strip()
    assert set(manifest["timings"]) == {"build_s", "simulate_s", "tabulate_s"}
    assert all(isinstance(v, float) and v >= 0 for v in manifest["timings"].values())
    assert manifest["tables"] == list(TABLES)
    summary = summary_of(runs.env_run)
    assert {k: v for k, v in summary.items() if k not in ("run_key", "run_dir")} == manifest["summary"]


def test_registry_row_records_the_run(runs):
    (row,) = runs.rows_after_first
    assert row.key == runs.key
    assert (row.status, row.scenario_name, row.seed_entropy, row.spawn_key) == ("done", "baseline", "3", "[]")
    assert row.version == loyaltysim.__version__
    assert Path(row.run_dir).resolve() == runs.run_dir.resolve()
    assert json.loads(row.summary_json) == manifest_of(runs.run_dir)["summary"]


def test_identical_rerun_is_reused(runs):
    assert f"run {runs.key[:16]} reused from {runs.run_dir}" in runs.repeat.stdout
    assert table_rows(runs.repeat.stdout) == table_rows(runs.first.stdout)
    first, again = runs.rows_after_first, runs.rows_after_repeat
    assert len(again) == 1 and again[0].key == first[0].key
    assert again[0].started_at == first[0].started_at  # the row was not rewritten
    stat = (runs.run_dir / "manifest.json").stat()  # nor the run directory
    assert (stat.st_ino, stat.st_mtime_ns) == (runs.first_manifest_stat.st_ino, runs.first_manifest_stat.st_mtime_ns)
    assert sorted(p.name for p in (runs.out / "runs").iterdir()) == [runs.run_dir.name]


def test_other_seed_or_steps_give_other_keys_and_numbers(runs):
    base, seed, steps = (summary_of(p) for p in (runs.env_run, runs.other_seed, runs.other_steps))
    assert len({base["run_key"], seed["run_key"], steps["run_key"]}) == 3
    assert seed["firms"] != base["firms"]
    assert steps["steps"] == 26 and steps["firms"] != base["firms"]
    assert manifest_of(runs.base / seed["run_dir"])["seed"]["entropy"] == 4
    assert scenario_from_dict(manifest_of(runs.base / steps["run_dir"])["scenario"]).steps() == 26


def test_relative_out_is_taken_from_the_working_directory(runs):
    summary = summary_of(runs.other_steps)
    assert (runs.base / summary["run_dir"]).resolve() == (runs.base / "out-steps" / "runs" / summary["run_key"][:16])
    (row,) = registry_rows(sqlite_url(runs.base / "out-steps" / "registry.sqlite"))
    assert row.key == summary["run_key"]


def test_registry_run_dir_is_absolute_for_a_relative_out(runs):
    (row,) = registry_rows(sqlite_url(runs.base / "out-steps" / "registry.sqlite"))
    # a registry may be shared (--db, LOYALTYSIM_DB): its rows must locate runs from any working directory
    assert Path(row.run_dir).is_absolute()
    assert Path(row.run_dir) == (runs.base / "out-steps" / "runs" / row.key[:16]).resolve()


def test_loyaltysim_db_env_is_honoured(runs):
    summary = summary_of(runs.env_run)
    assert summary["run_key"] == runs.key  # where the registry lives is not part of a run's identity
    assert not (runs.env_out / "registry.sqlite").exists()
    (row,) = registry_rows(sqlite_url(runs.env_db))
    assert (row.key, row.status) == (runs.key, "done")
    assert Path(row.run_dir).resolve() == (runs.env_out / "runs" / runs.key[:16]).resolve()


@pytest.fixture
def postgres_cli_db(postgres_url):
    """A database of its own on the session's PostgreSQL server, dropped afterwards.

    Other tests expect the session's database to hold only their own rows, so this test stays out of it.
    """
    import psycopg
    from sqlalchemy import make_url

    url = make_url(postgres_url)
    name = "loyaltysim_cli_test"
    admin = dict(host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**admin) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
def test_db_option_records_the_run_in_postgresql(postgres_cli_db, tmp_path, scenario_data):
    postgres_url = postgres_cli_db
    scenario = write_scenario(tmp_path / "s.toml", scenario_data(**SMALL))
    out, env_db = tmp_path / "out", tmp_path / "env.sqlite"
    env = _env(**{DB_ENV_VAR: sqlite_url(env_db)})  # --db beats the environment
    args = ("run", scenario, "--seed", 9, "--steps", 8, "--out", out, "--db", postgres_url)
    first = summary_of(ok(cli(*args, "--json", cwd=tmp_path, env=env)))
    second = ok(cli(*args, cwd=tmp_path, env=env))
    assert f"run {first['run_key'][:16]} reused from " in second.stdout
    assert not env_db.exists() and not (out / "registry.sqlite").exists()
    rows = registry_rows(postgres_url)
    assert [r.key for r in rows] == [first["run_key"]]
    assert (rows[0].status, rows[0].seed_entropy, rows[0].scenario_name) == ("done", "9", "baseline")
    assert json.loads(rows[0].summary_json) == manifest_of(first["run_dir"])["summary"]


def test_run_writes_the_event_logs_a_scenario_asks_for(tmp_path, scenario_data):
    data = scenario_data(**SMALL, outputs__event_logs=["purchases", "service"])
    scenario = write_scenario(tmp_path / "s.toml", data)
    summary = summary_of(ok(cli("run", scenario, "--out", tmp_path / "out", "--json", cwd=tmp_path)))
    run_dir = tmp_path / summary["run_dir"]
    purchases = pd.read_parquet(run_dir / "purchases.parquet")
    firms = pd.read_parquet(run_dir / "firms.parquet")
    assert purchases["occasions"].sum() == firms["purchases"].sum() > 0
    assert len(pd.read_parquet(run_dir / "service.parquet")) == firms["failures"].sum()
    assert manifest_of(run_dir)["tables"][-2:] == ["purchases", "service"]


# ------------------------------------------------------------------------------------------ other commands


def test_help_lists_the_commands_and_options():
    proc = ok(subprocess.run(cli_args("--help"), capture_output=True, text=True, timeout=TIMEOUT, env=_env()))
    assert "run" in proc.stdout and "validate" in proc.stdout and "--version" in proc.stdout
    proc = ok(subprocess.run(cli_args("run", "--help"), capture_output=True, text=True, timeout=TIMEOUT,
                             env=_env(COLUMNS="200")))
    for option in ("--seed", "--steps", "--out", "--db", "--json"):
        assert option in proc.stdout


def test_version():
    proc = ok(subprocess.run(cli_args("--version"), capture_output=True, text=True, timeout=TIMEOUT, env=_env()))
    assert proc.stdout == f"loyaltysim {loyaltysim.__version__}\n"


def test_console_script_prints_the_version():
    script = Path(sys.executable).with_name("loyaltysim")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    proc = ok(subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT))
    assert proc.stdout == f"loyaltysim {loyaltysim.__version__}\n"


def test_validate_accepts_a_good_file(runs, tmp_path):
    proc = ok(cli("validate", runs.scenario, cwd=tmp_path))
    assert "valid" in proc.stdout and "3 firms" in proc.stdout and "300 customers" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # validating writes nothing


def test_validate_checks_an_experiment_file_and_what_its_findings_read(tmp_path):
    shipped = REPO / "experiments" / "robustness_jones_sasser.toml"
    proc = ok(cli("validate", shipped, cwd=tmp_path))
    assert "valid (experiment 'robustness_jones_sasser', 11 design point(s) x 10 replication(s)" in proc.stdout
    lacking = tmp_path / "lacking.toml"
    lacking.write_text(shipped.read_text(encoding="utf-8").replace('  "market.retention_by_score_4",\n', "")
                       .replace('scenario = "scenarios/', f'scenario = "{shipped.parent}/scenarios/'), encoding="utf-8")
    _assert_user_error(cli("validate", lacking, cwd=tmp_path), "1 problem(s)",
                       "findings[0]: the findings 'robustness_jones_sasser' reads the outcome(s) "
                       "['market.retention_by_score_4']; add them to outcomes")


SHIPPED_EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED_EXPERIMENTS, ids=lambda p: p.name)
def test_validate_checks_every_shipped_experiment_as_an_experiment(path):
    from typer.testing import CliRunner

    from loyaltysim.cli import app
    from loyaltysim.experiments.design import load_experiment

    experiment = load_experiment(path)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}: valid (experiment '{experiment.name}', {len(experiment.design)} "
                                    f"design point(s) x {experiment.replications} replication(s)")


@pytest.mark.parametrize(("change", "problem"), [
    (lambda text: re.sub(r'(?m)^scenario = .*$', "", text), "scenario: required key is missing"),
    (lambda text: text.replace("replications = ", "replications = -", 1), "replications: Input should be greater"),
    (lambda text: text.replace('"policy.campaigns[0].offer.discount" = 0.1', '"policy.campaigns[0].ofer" = 0.1', 1),
     "has no key 'ofer'; did you mean 'offer'?"),
], ids=["no scenario", "negative replications", "misspelt path"])
def test_validate_reports_a_broken_experiment_as_an_experiment(tmp_path, change, problem):
    """An experiment file with a problem gets the experiment's problems, not a scenario's about a missing market."""
    from typer.testing import CliRunner

    from loyaltysim.cli import app

    shipped = REPO / "experiments" / "winback.toml"
    broken = tmp_path / "broken.toml"
    broken.write_text(change(shipped.read_text(encoding="utf-8"))
                      .replace('scenario = "scenarios/', f'scenario = "{shipped.parent}/scenarios/'), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2, result.output
    assert problem in result.output, result.output
    assert "market: required key is missing" not in result.output and "unknown key" not in result.output


def test_validate_names_a_calibration_targets_file():
    from typer.testing import CliRunner

    from loyaltysim.cli import app

    targets = REPO / "experiments" / "targets" / "cdnow.toml"
    result = CliRunner().invoke(app, ["validate", str(targets)])
    assert result.exit_code == 2, result.output
    assert "a calibration targets file" in result.output and "--targets" in result.output
    assert "required key is missing" not in result.output


def test_the_run_summary_labels_money_with_the_currency_and_says_what_it_scaled(tmp_path, scenario_data):
    data = scenario_data(**SMALL)
    data["economics"] = {**data.get("economics", {}), "currency": "EUR", "reference_population": 1500}
    path = write_scenario(tmp_path / "eur.toml", data)
    proc = ok(cli("run", path, "--out", tmp_path / "out", cwd=tmp_path))
    for label in ("revenue (EUR)", "profit (EUR)", "NPV (EUR)"):
        assert label in proc.stdout
    assert "scaled x0.2: 300 customers, stated for 1,500 (economics.reference_population)" in \
        " ".join(proc.stdout.split())
    assert max(len(line) for line in proc.stdout.splitlines()[:-1]) <= 80


def test_an_unreadable_file_is_one_error_line_not_a_usage_box(runs, tmp_path, monkeypatch):
    """Opening a file without read permission raises PermissionError (the tests may run as root, who can read
    anything, so the refusal is made here): every command that reads a file says so in one line, exit 2."""
    from typer.testing import CliRunner

    from loyaltysim.cli import app

    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if self.name == "locked.toml":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    locked = tmp_path / "locked.toml"
    locked.write_text(Path(runs.scenario).read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(Path, "open", refuse)
    for command in ("validate", "run", "sweep", "calibrate-check"):
        result = CliRunner().invoke(app, [command, str(locked)])
        assert result.exit_code == 2, (command, result.output)
        assert result.output.startswith(f"error: {locked}") and "Permission denied" in result.output, command
        assert "Usage" not in result.output and "Traceback" not in result.output, command


# Scenario problems: (override, text the message must contain: the field and what is allowed).
PROBLEMS = {
    "unknown_key": ({"market__customers__populaton": 300},
                    ("market.customers.populaton", "unknown key")),
    "unknown_top_level_key": ({"colour": "blue"}, ("colour", "unknown key")),
    "negative_price": ({"market__firms__1__price": -28.0},
                       ("market.firms[1].price", "greater than 0", "-28.0")),
    "probability_above_one": ({"market__firms__0__reliability": 1.5},
                              ("market.firms[0].reliability", "less than or equal to 1", "1.5")),
    "probability_below_zero": ({"market__network__rewire": -0.1},
                               ("market.network.rewire", "greater than or equal to 0", "-0.1")),
    "period_probability_above_100pct": ({"market__customers__natural_churn": "150% per year"},
                                        ("market.customers.natural_churn", "[0, 1]")),
}


def _assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def validated(tmp_path_factory, scenario_data) -> dict[str, subprocess.CompletedProcess]:
    """``loyaltysim validate`` on a file per problem, and on one file holding all of them."""
    base = tmp_path_factory.mktemp("cli-validate")
    files = {name: write_scenario(base / f"{name}.toml", scenario_data(**SMALL, **override))
             for name, (override, _) in PROBLEMS.items()}
    every = {k: v for override, _ in PROBLEMS.values() for k, v in override.items()}
    files["all"] = write_scenario(base / "all.toml", scenario_data(**SMALL, **every))
    started = {name: start("validate", path, cwd=base) for name, path in files.items()}
    return {name: finish(proc) for name, proc in started.items()}


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_validate_names_the_field_and_what_is_allowed(validated, problem):
    proc = validated[problem]
    _assert_user_error(proc, "1 problem(s)", *PROBLEMS[problem][1])
    assert len(proc.stderr.splitlines()) == 2


def test_validate_lists_every_problem(validated):
    proc = validated["all"]
    _assert_user_error(proc, f"{len(PROBLEMS)} problem(s)", *(n for _, needles in PROBLEMS.values() for n in needles))
    assert len(proc.stderr.splitlines()) == 1 + len(PROBLEMS)


# ------------------------------------------------------------------------------------------ bad input to run


@dataclass
class Bad:
    args: tuple  # after "run SCENARIO"; "{file}" stands for a regular file; "--out OUT" is added if missing
    expected: tuple[str, ...]  # all in stderr
    scenario: dict | str | None = None  # overrides of the small scenario, raw file text, or None: SMALL as is
    out_created: bool = False  # OUT may exist afterwards (but holds no run and no file)
    db_env: str | None = None


BAD = {
    "malformed_toml": Bad((), ("malformed TOML", "line 3"), scenario='name = "x"\n\n[time\nstep = "week"\n'),
    "out_of_range_values": Bad((), ("3 problem(s)", "market.firms[1].price", "greater than 0",
                                    "market.firms[0].reliability", "less than or equal to 1",
                                    "market.customers.populaton", "unknown key"),
                               scenario={"market__firms__1__price": -28.0, "market__firms__0__reliability": 1.5,
                                         "market__customers__populaton": 300}),
    "missing_file": Bad((), ("does-not-exist.toml", "file not found"), scenario="<missing>"),
    "steps_zero": Bad(("--steps", 0), ("--steps", "greater than or equal to 1")),
    # (fewer steps than the warm-up take the same path: see test_run.py)
    "steps_equal_to_warmup": Bad(("--steps", 4), ("--steps", "warm-up of 4 steps", "time.warmup")),
    "unwritable_out": Bad(("--out", "{file}/sub"), ("output directory", "a-regular-file/sub", "not writable")),
    "unreachable_db": Bad(("--db", "postgresql+psycopg://u:s3cret@127.0.0.1:1/x"),
                          ("cannot open results database", "postgresql+psycopg://u:***@127.0.0.1:1/x"),
                          ),
    "unreachable_db_from_env": Bad((), ("cannot open results database", "postgresql+psycopg://u@127.0.0.1:1/x"),
                                   db_env="postgresql+psycopg://u@127.0.0.1:1/x"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, scenario_data) -> dict[str, tuple[subprocess.CompletedProcess, Path, Path]]:
    """Every bad-input case, run side by side: {case: (process, OUT, working directory)}."""
    base = tmp_path_factory.mktemp("cli-bad")
    started = {}
    for name, case in BAD.items():
        work = base / name
        work.mkdir()
        scenario = work / "scenario.toml"
        if case.scenario == "<missing>":
            scenario = work / "does-not-exist.toml"
        elif isinstance(case.scenario, str):
            scenario.write_text(case.scenario, encoding="utf-8")
        else:
            write_scenario(scenario, scenario_data(**SMALL, **(case.scenario or {})))
        regular_file = work / "a-regular-file"
        regular_file.write_text("not a directory\n")
        args = [str(a).replace("{file}", str(regular_file)) for a in case.args]
        if "--out" not in args:
            args += ["--out", str(work / "out")]
        out = Path(args[args.index("--out") + 1])
        env = _env(**{DB_ENV_VAR: case.db_env}) if case.db_env else _env()
        started[name] = (start("run", scenario, *args, cwd=work, env=env), out, work)
    return {name: (finish(proc), out, work) for name, (proc, out, work) in started.items()}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_cleanly(bad_runs, case):
    proc, out, work = bad_runs[case]
    spec = BAD[case]
    _assert_user_error(proc, *spec.expected)
    if case != "steps_zero":  # the option parser frames its own message (usage line and a box)
        assert proc.stderr.startswith("error: ")
        assert len(proc.stderr.splitlines()) <= (4 if case == "out_of_range_values" else 2), proc.stderr
    # nothing half-written: no run directory, no temp directory, no registry file, no file at all
    if spec.out_created:
        runs = out / "runs"
        assert not runs.exists() or list(runs.iterdir()) == []
        assert [p for p in out.rglob("*") if not p.is_dir()] == []
    else:
        assert not out.exists()
    assert {p.name for p in work.iterdir()} <= {"a-regular-file", "scenario.toml", "out"}  # e.g. no results/
    assert (work / "a-regular-file").read_text() == "not a directory\n"


# ------------------------------------------------------------------------------------------ a single firm


def test_a_single_firm_market_runs_and_is_checked_through_the_command(tmp_path, scenario_data):
    """One firm with the outside option and a cohort arriving over time, in both kinds of market: ``run`` stores it
    and summarises the one firm, ``calibrate-check`` reports it and says why it fits no NBD-Dirichlet; without the
    outside option ``validate`` refuses one firm and names the fix."""
    procs = {}
    for market in ("contractual", "repertoire"):
        data = scenario_data(**{**SMALL, "time__warmup": "0 weeks"}, market__type=market,
                             outputs__event_logs=["purchases"],
                             market__customers__arrivals={"enabled": True, "over": "6 weeks"},
                             market__outside_option={"enabled": True, "utility": 2.5, "reference_price": 30.0})
        data["market"]["firms"] = data["market"]["firms"][:1]
        data["market"]["events"] = []
        path = write_scenario(tmp_path / f"one_{market}.toml", data)
        procs[market, "run"] = start("run", path, "--json", "--out", tmp_path / "out", cwd=tmp_path)
        procs[market, "check"] = start("calibrate-check", path, "--seeds", 1, cwd=tmp_path)
        del data["market"]["outside_option"]
        procs[market, "refused"] = start("validate", write_scenario(tmp_path / f"two_{market}.toml", data),
                                         cwd=tmp_path)
    done = {k: finish(p) for k, p in procs.items()}
    for market in ("contractual", "repertoire"):
        summary = summary_of(ok(done[market, "run"]))
        assert [f["firm"] for f in summary["firms"]] == ["Focal"]
        assert summary["firms"][0]["customers_end"] > 0 and summary["firms"][0]["revenue"] > 0
        assert (Path(summary["run_dir"]) / "purchases.parquet").is_file()
        check = ok(done[market, "check"]).stdout
        assert "annual churn" in check
        assert ("NBD-Dirichlet not fitted" in check) == (market == "repertoire")
        _assert_user_error(done[market, "refused"], "market.firms: a market needs at least two firms (got 1)",
                           "market.outside_option.enabled = true")
