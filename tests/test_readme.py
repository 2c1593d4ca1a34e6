"""The README's Python examples run as written (the worked example at a smaller population)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.index("\n## ", start + 3)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_python_examples_run(monkeypatch, capsys):
    monkeypatch.chdir(README.parent)
    blocks = _python_blocks("Using it from Python and Mesa")
    assert len(blocks) == 2
    worked = blocks[0].replace('"market.customers.population": 2000', '"market.customers.population": 300')
    assert worked != blocks[0]  # the example's size is where the test expects it
    namespace: dict = {}
    exec(compile(worked, "README worked example", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.count("purchase rate at the firm after / before") == 2
    exec(compile(blocks[1], "README model example", "exec"), namespace)
    model = namespace["model"]
    assert model.steps == 78 and len(namespace["firms"]) == 78 * len(model.firms)
