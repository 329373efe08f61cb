"""The error tree is in one place: every exception class of cdc, its connectors and its sinks is
defined in, or re-exported from, cdc.errors."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import cdc
import cdc.errors
import connectors
import sinks


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (cdc, connectors, sinks):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__
                ):
                    found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_error_class_is_in_cdc_errors() -> None:
    classes = _exception_classes()
    assert len(classes) >= 10  # the walk found the tree, not nothing
    outside = sorted(
        where
        for where, cls in classes.items()
        if getattr(cdc.errors, cls.__name__, None) is not cls
    )
    assert outside == [], f"define these in cdc/errors.py (or re-export them there): {outside}"


def test_every_error_is_a_cdc_error_that_says_whether_to_retry() -> None:
    for where, cls in _exception_classes().items():
        assert issubclass(cls, cdc.errors.CdcError), where
        assert isinstance(cls.retriable, bool), where
