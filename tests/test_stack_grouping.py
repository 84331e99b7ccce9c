"""The production stack's tests run on one worker: tests/conftest.py's scheduler groups STACK_MODULES,
and collection refuses a module that uses the stack without being listed there."""
from __future__ import annotations

import pytest

from tests import conftest


class _Item:
    def __init__(self, nodeid: str, fixtures: tuple[str, ...]):
        self.nodeid, self.fixturenames, self.markers = nodeid, fixtures, []

    def add_marker(self, mark) -> None:
        self.markers.append(mark)


def test_a_stack_module_not_listed_is_refused_at_collection():
    listed = _Item("tests/api/test_e2e_fleet.py::test_x", ("stack",))
    conftest.pytest_collection_modifyitems(None, [listed, _Item("tests/test_free.py::test_y", ())])
    assert [m.name for m in listed.markers] == ["servers"]
    with pytest.raises(pytest.UsageError, match="STACK_MODULES"):
        conftest.pytest_collection_modifyitems(None, [_Item("tests/api/test_new_e2e.py::test_z", ("on_stack",))])


def test_the_stack_modules_are_one_work_unit_and_other_tests_their_own():
    stack_tests = ["tests/api/test_e2e_fleet.py::test_a", "tests/api/test_e2e_drift.py::test_b",
                   "tests/registry/test_production_stack.py::test_c[x]"]
    assert {conftest.work_unit(n) for n in stack_tests} == {"stack"}
    other = "tests/api/test_api.py::test_d[postgresql]"
    assert conftest.work_unit(other) == other
