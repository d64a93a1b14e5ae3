"""The public API: each package exports exactly its public names, sorted."""

from __future__ import annotations

import importlib
import pkgutil

import pytest


@pytest.mark.parametrize("package_name", ["eventlog", "projections"])
def test_all_is_sorted_and_complete(package_name: str) -> None:
    """__all__ equals the union of the public modules' __all__ (ruff's RUF022 keeps it sorted)."""
    package = importlib.import_module(package_name)
    exported = list(package.__all__)
    assert len(exported) == len(set(exported))
    expected: set[str] = set()
    for module_info in pkgutil.iter_modules(package.__path__):
        if module_info.name.startswith("_") or module_info.name == "cli":
            continue
        module = importlib.import_module(f"{package_name}.{module_info.name}")
        expected.update(module.__all__)
    assert set(exported) == expected
    for name in exported:
        assert getattr(package, name) is not None


def test_projections_never_imported_by_eventlog() -> None:
    """The write side stands alone: no eventlog module imports projections."""
    for module_info in pkgutil.iter_modules(importlib.import_module("eventlog").__path__):
        module = importlib.import_module(f"eventlog.{module_info.name}")
        source = module.__loader__.get_source(module.__name__)  # type: ignore[union-attr]
        assert "from projections" not in (source or "")
        assert "import projections" not in (source or "")
