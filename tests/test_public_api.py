"""Each package keeps a small public surface: ``__all__`` lists importable names, and every
public class and function there carries a docstring (STYLE.md §1 and §9)."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["govdx", "catalog", "pipelines", "privacy", "quality", "sandbox", "reports", "api"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_documented(name):
    pkg = importlib.import_module(name)
    exported = getattr(pkg, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    undocumented = []
    for attr in exported:
        obj = getattr(pkg, attr)  # AttributeError names a missing export
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
            undocumented.append(attr)
    assert undocumented == [], f"{name}: public names without a docstring: {undocumented}"
