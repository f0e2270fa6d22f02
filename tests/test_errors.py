"""The exception tree: one root, builtin bases, __all__ complete."""

from __future__ import annotations

import inspect

import moldb
import moldb.errors as errors


def test_all_matches_public_names() -> None:
    public = {n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, Exception)
              and not n.startswith("_")}
    assert set(errors.__all__) == public


def test_every_error_derives_from_root_and_is_exported() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.MoldbError)
        assert getattr(moldb, name) is cls


def test_builtin_bases() -> None:
    assert issubclass(errors.StoreNotFoundError, FileNotFoundError)
    assert issubclass(errors.EntryNotFoundError, KeyError)
    assert issubclass(errors.ParseError, ValueError)
    assert issubclass(errors.DuplicateEntryError, ValueError)
    e = errors.ParseError("x.cif", "broken")
    assert (e.path, e.problem, str(e)) == ("x.cif", "broken", "x.cif: broken")


def test_package_all_is_importable() -> None:
    for name in moldb.__all__:
        assert getattr(moldb, name) is not None
