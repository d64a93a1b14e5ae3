"""The README's Python examples run, so the README cannot rot."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_runnable_examples() -> None:
    """The README shows at least one runnable Python example."""
    assert EXAMPLES


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(
    source: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ```python block of the README runs to the end and prints what it promises.

    It runs as a module of its own, registered as modules are: frameworks that read the
    annotations of a class it defines (LangGraph's state) look its module up by name.
    """
    module = types.ModuleType("readme_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, str(README), "exec"), module.__dict__)  # noqa: S102
    assert capsys.readouterr().out.strip()
