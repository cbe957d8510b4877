"""The plugin contract as a test suite any modality plugin runs against itself.

In a plugin's tests (pytest collects the subclass; each check is one test)::

    from framework.testing import ModalityContract, PluginCase

    class TestMineContract(ModalityContract):
        case = PluginCase.from_recipe(RECIPE, data_args={"n_train": 32, "n_val": 16, "batch_size": 8})

or without pytest, ``framework.testing.check_plugin(case)`` runs every check and raises one
:class:`ContractError` listing the failures. The checks are described in
:mod:`framework.testing.contract` and ``docs/plugins.md``. Training checks import Lightning;
importing this package does not.
"""

from __future__ import annotations

from typing import ClassVar

from framework.testing.case import PluginCase
from framework.testing.contract import CHECKS, Contract, check_plugin
from framework.testing.errors import ContractError

__all__ = ["CHECKS", "Contract", "ContractError", "ModalityContract", "PluginCase", "check_plugin"]


class ModalityContract:
    """Base class of a plugin's contract tests: set :attr:`case`; pytest runs one test per check.

    The data batch and the tiny trained model are built once per subclass and shared by its tests.
    Set :attr:`skip` to leave checks out (e.g. ``("judge",)`` for a plugin without metrics).
    """

    case: ClassVar[PluginCase]
    skip: ClassVar[tuple[str, ...]] = ()
    _contracts: ClassVar[dict[type, Contract]] = {}

    @classmethod
    def contract(cls) -> Contract:
        """The shared :class:`Contract` of this subclass."""
        if cls not in ModalityContract._contracts:
            ModalityContract._contracts[cls] = Contract(cls.case)
        return ModalityContract._contracts[cls]

    def _run(self, name: str) -> None:
        if name in self.skip:
            import pytest

            pytest.skip(f"{type(self).__name__}.skip lists {name!r}")
        getattr(self.contract(), f"check_{name}")()

    def test_registry(self) -> None:
        self._run("registry")

    def test_batch(self) -> None:
        self._run("batch")

    def test_codec(self) -> None:
        self._run("codec")

    def test_encoders(self) -> None:
        self._run("encoders")

    def test_train_and_sample(self) -> None:
        self._run("train_and_sample")

    def test_writer(self) -> None:
        self._run("writer")

    def test_judge(self) -> None:
        self._run("judge")

    def test_sampling_without_lightning(self) -> None:
        self._run("sampling_without_lightning")
