"""The figures and findings experiment files may name: declared in loyaltysim.experiments.registry, implemented in
the reporting layer, and the two sets the same."""

import ast
import tomllib
from pathlib import Path

import pytest

from loyaltysim.experiments import registry
from loyaltysim.experiments.design import ExperimentError, load_experiment
from loyaltysim.reporting import report

REPO = Path(__file__).resolve().parents[2]
FINDINGS_DIR = REPO / "src" / "loyaltysim" / "reporting" / "findings"


def test_the_names_implemented_are_exactly_the_names_declared():
    report.load_figures()
    assert set(report.FIGURES) == set(registry.FIGURES) == registry.SHIPPED["figure"]
    assert set(report.FINDINGS) == set(registry.FINDINGS) == registry.SHIPPED["findings"]
    for fn in [*report.FIGURES.values(), *report.FINDINGS.values()]:
        assert fn.__module__ in report.FIGURE_MODULES, fn


def test_a_module_of_the_package_cannot_implement_an_undeclared_name():
    def figure(results, experiment, folder):  # pragma: no cover - never drawn
        return folder

    figure.__module__ = "loyaltysim.reporting.findings.elsewhere"
    with pytest.raises(ValueError, match=r"figure 'undeclared' .* is not declared; declare it in"):
        report.register_figure("undeclared")(figure)
    assert "undeclared" not in report.FIGURES and "undeclared" not in registry.FIGURES


def test_code_outside_the_package_declares_what_it_registers(tmp_path):
    text = (REPO / "tests" / "data" / "tiny_experiment.toml").read_text()
    text = text.replace('"../../experiments/', f'"{REPO.as_posix()}/experiments/')
    path = tmp_path / "probe.toml"
    path.write_text('findings = ["probe_findings"]\n' + text)
    with pytest.raises(ExperimentError, match="unknown findings 'probe_findings'"):
        load_experiment(path)

    @report.register_findings("probe_findings")
    def probe(results, experiment):  # pragma: no cover - never checked here
        """A probe."""
        return []

    try:
        assert registry.FINDINGS["probe_findings"].description == "A probe."
        assert load_experiment(path).findings == ["probe_findings"]
    finally:
        report.unregister_findings("probe_findings")
    assert "probe_findings" not in registry.FINDINGS and "probe_findings" not in report.FINDINGS
    registry.withdraw("findings", "jones_sasser")  # the package's own declarations stay
    assert "jones_sasser" in registry.FINDINGS


def test_the_shipped_experiments_have_the_factors_and_outcomes_their_figures_and_findings_read():
    gaps = set()
    for path in sorted((REPO / "experiments").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        factors = {f["name"] for f in data.get("factors", [])}
        for kind, key in (("figure", "figures"), ("findings", "findings")):
            for name in data.get(key, []):
                needs = registry.declared(kind)[name]
                assert set(needs.factors) <= factors, (path.name, name)
                gaps |= {(path.name, kind, name, o) for o in needs.outcomes if o not in data["outcomes"]}
    assert not gaps


def test_the_findings_modules_share_public_helpers_only():
    """No findings module imports another's private names; each registers what it implements."""
    for path in sorted(FINDINGS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loyaltysim"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
