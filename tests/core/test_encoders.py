"""Condition encoders are resolved by registered name; import paths are refused, nothing imported."""

import sys
from typing import ClassVar

import pytest
import torch

from framework.core import encoders, plugins
from framework.core.conditions import ConditionError, ConditionSpec


def test_core_names_resolve():
    assert encoders.resolve("minilm") is encoders.minilm


class _Doubling(plugins.Modality):
    name = "doubling"
    encoders: ClassVar = {"twice": lambda xs: torch.tensor([[2.0 * float(x)] for x in xs])}


def test_plugin_encoders_resolve_through_the_registry(monkeypatch):
    monkeypatch.setattr(plugins, "get", lambda name: {"doubling": _Doubling()}[name])
    spec = ConditionSpec("level", kind="vector", dim=1, encoder="doubling/twice")
    torch.testing.assert_close(spec.encode(["1.5", "2"], 2), torch.tensor([[3.0], [4.0]]))
    unknown = ConditionSpec("level", kind="vector", dim=1, encoder="doubling/thrice")
    with pytest.raises(ConditionError, match=r"condition 'level'.*registers no encoder 'thrice'.*twice"):
        unknown.encode("1", 1)


@pytest.mark.fault("malicious file")
@pytest.mark.parametrize("name", ["os:system", "subprocess:run", "framework.core.encoders:minilm",
                                  "builtins:eval", "../minilm", "Minilm", "a/b/c", ""])
def test_import_paths_and_malformed_names_are_refused_before_any_import(name):
    before = set(sys.modules)
    with pytest.raises(ConditionError, match="not a registered-encoder name"):
        ConditionSpec("text", kind="vector", dim=4, encoder=name)
    assert set(sys.modules) == before


@pytest.mark.fault("bad condition")
def test_unknown_core_encoder_names_the_known_ones():
    spec = ConditionSpec("text", kind="vector", dim=4, encoder="clip")
    with pytest.raises(ConditionError, match=r"no core encoder 'clip'.*minilm"):
        spec.encode("a cat", 1)
