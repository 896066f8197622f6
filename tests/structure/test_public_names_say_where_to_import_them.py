"""Public classes report the module users import them from, and handles that
only a factory may build refuse to be built by hand."""

from __future__ import annotations

import pickle

import pytest

import trio_delta as delta
import trio_delta.producer
import trio_delta.sqlalchemy
import trio_delta.testing


@pytest.mark.parametrize("name", sorted(delta.__all__))
def test_public_names_report_trio_delta_as_their_module(name: str) -> None:
    obj = getattr(delta, name)
    if isinstance(obj, type) or callable(obj):
        assert obj.__module__ == "trio_delta", (name, obj.__module__)


def test_repr_and_pickle_use_the_public_path() -> None:
    assert repr(delta.ResourceState.SYNCED) == "<ResourceState.SYNCED: 'synced'>"
    assert delta.Config.__module__ == "trio_delta"
    assert pickle.loads(pickle.dumps(delta.InformOpts(namespace="x"))) == delta.InformOpts(
        namespace="x"
    )
    assert trio_delta.testing.TestClient.__module__ == "trio_delta.testing"


@pytest.mark.parametrize("cls", [delta.Client, delta.Transaction, trio_delta.testing.TestClient])
def test_handles_have_no_public_constructor(cls: type) -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        cls()


@pytest.mark.parametrize("module", [trio_delta.producer, trio_delta.sqlalchemy])
def test_helper_modules_report_their_own_name(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names
    for name in names:
        assert getattr(module, name).__module__ == module.__name__  # type: ignore[attr-defined]
