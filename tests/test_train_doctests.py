"""The docstring examples of the training package run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["augment", "calibrate", "columns", "evaluation", "labels", "model", "rules", "splits"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    mod = importlib.import_module(f"netwarden_train.{name}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
