"""docs/findings.md's appendix lists every way each findings experiment's market differs from its baseline: the
tables are checked against the files, so a setting changed without its row (or a row no longer true) fails here."""

import re
from pathlib import Path

import pytest

from loyaltysim import load_scenario
from loyaltysim.experiments import differences as dif
from loyaltysim.experiments.design import load_experiment

ROOT = Path(__file__).resolve().parents[2]
FINDINGS = ROOT / "docs" / "findings.md"
MARKER = re.compile(r"<!-- differences: (\S+) against (\S+) -->")


def cells(line: str) -> list[str]:
    """A Markdown table row's cells (``\\|`` inside a cell kept)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def listed() -> dict[tuple[str, str], tuple[list[list[str]], list[list[str]]]]:
    """Each marker's (experiment, baseline) and the rows of its two tables: shared differences (5 cells) and what
    the arms vary (3 cells); header and rule rows left out."""
    out, current = {}, None
    for line in FINDINGS.read_text(encoding="utf-8").splitlines():
        found = MARKER.match(line)
        if found:
            current = out.setdefault((found.group(1), found.group(2)), ([], []))
            continue
        if line.startswith("#"):
            current = None
        if current is None or not line.startswith("| `"):
            continue
        row = cells(line)
        current[0 if len(row) == 5 else 1].append(row)
    return out


def test_every_findings_experiment_has_its_list():
    with_findings = {f"experiments/{p.name}" for p in (ROOT / "experiments").glob("*.toml")
                     if re.search(r"^findings\s*=", p.read_text(), re.M)}
    with_findings.add("experiments/retention.toml")  # section 5's experiment reports through its own outcomes
    assert with_findings <= {experiment for experiment, _ in listed()}


@pytest.mark.parametrize("experiment, baseline", sorted(listed()))
def test_the_listed_differences_are_the_files(experiment, baseline):
    shared, arms = listed()[(experiment, baseline)]
    expected_shared, expected_arms = dif.markdown_rows(load_scenario(ROOT / baseline),
                                                       load_experiment(ROOT / experiment))
    assert [tuple(r[:4]) for r in shared] == [tuple(c.replace("\\|", "|") for c in r) for r in expected_shared]
    assert [tuple(r) for r in arms] == list(expected_arms)
    assert all(r[4] for r in shared), "every shared difference says why"


def test_a_change_without_its_row_fails(tmp_path):
    # the trap's market with one more difference (a psychology setting) no longer matches the listed rows
    experiment = "experiments/satisfaction_trap.toml"
    shared, _ = listed()[(experiment, "experiments/scenarios/baseline.toml")]
    text = (ROOT / "experiments" / "scenarios" / "trap.toml").read_text()
    changed = tmp_path / "scenarios" / "trap.toml"
    changed.parent.mkdir()
    assert "\nchoice_noise = 0.3 " in text
    changed.write_text(text.replace("\nchoice_noise = 0.3 ", "\nchoice_noise = 0.8 ", 1))
    (tmp_path / "satisfaction_trap.toml").write_text((ROOT / experiment).read_text())
    rows, _ = dif.markdown_rows(load_scenario(ROOT / "experiments" / "scenarios" / "baseline.toml"),
                                load_experiment(tmp_path / "satisfaction_trap.toml"))
    assert [tuple(r[:4]) for r in shared] != list(rows)
    assert ("`market.customers.choice_noise`", "0.3", "0.8", "psychology") in rows


def test_kinds_sort_settings():
    assert dif.kind("market.customers.choice_noise") == "psychology"
    assert dif.kind("market.customers.switching_cost") == "structure"
    assert dif.kind("market.customers.population") == "run"
    assert dif.kind("market.customers.lifetimes.dropout.a") == "demand"
    assert dif.kind("market.survey.cutpoints") == "survey"
    assert dif.kind("market.attributes[2].kano") == "psychology"
    assert dif.kind("market.attributes[2].cost_per_unit") == "structure"
    assert dif.kind("market.firms[1].reaction.delay") == "structure"
    assert dif.kind("market.network.influence") == "psychology" and dif.kind("market.network.degree") == "structure"
    assert dif.kind("policy.campaigns") == "policy" and dif.kind("time.warmup") == "run"
