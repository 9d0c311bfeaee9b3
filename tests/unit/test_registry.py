from __future__ import annotations

import sys
import types

import pytest

from framework.errors import RegistryError
from framework.registry import Registry


class A: ...


class B: ...


def test_get_unknown_lists_available_names():
    reg: Registry = Registry("producer", "pipeline.test-none")
    reg.register("metrics", A)
    reg.register("workorder", B)
    assert reg.get("metrics") is A
    with pytest.raises(RegistryError, match="Unknown producer 'metrix'; available: metrics, workorder."):
        reg.get("metrix")


def test_same_name_for_two_classes_is_refused():
    reg: Registry = Registry("consumer", "pipeline.test-none")
    reg.register("x", A)
    reg.register("x", A)  # re-registering the same class (module re-import) is fine
    with pytest.raises(RegistryError, match="Two consumers are named 'x'"):
        reg.register("x", B)


def test_discover_imports_user_modules(monkeypatch):
    reg: Registry = Registry("producer", "pipeline.test-none")
    module = types.ModuleType("user_plugins_for_test")
    module.__dict__["loaded"] = True
    monkeypatch.setitem(sys.modules, "user_plugins_for_test", module)
    reg.discover(["user_plugins_for_test"], builtin="framework")
    with pytest.raises(RegistryError, match="Cannot import module 'no_such_module_xyz'"):
        reg.discover(["no_such_module_xyz"], builtin="framework")
