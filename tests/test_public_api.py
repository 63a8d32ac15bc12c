"""The public surface: ``keel.__all__`` lists exactly the public names, errors pickle."""

from __future__ import annotations

import pickle

import pytest

import keel
from keel import exceptions


def test_all_matches_public_names() -> None:
    import types

    assert sorted(set(keel.__all__)) == sorted(keel.__all__)
    for name in keel.__all__:  # every lazily exported name resolves
        assert getattr(keel, name) is not None
    public = {
        n
        for n in dir(keel)
        if not n.startswith("_") and not isinstance(getattr(keel, n), types.ModuleType)
    }
    assert sorted(public - {"annotations", "TYPE_CHECKING", "Any"}) == sorted(keel.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keel.nope  # noqa: B018


@pytest.mark.parametrize(
    "err",
    [
        exceptions.NotFoundError("Run 'x' not found.", run_id="x"),
        exceptions.ParamConflictError("conflict", key="lr", old="1", new="2"),
        exceptions.IntegrityError("bad", digest="ab" * 32, actual="cd" * 32),
        exceptions.BackendUnavailableError("down"),
    ],
)
def test_errors_pickle_with_their_attributes(err: exceptions.KeelError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and back.details == err.details
    for key, value in err.details.items():
        assert getattr(back, key) == value


def test_error_tree_mixes_in_stdlib_types() -> None:
    assert issubclass(exceptions.NotFoundError, KeyError)
    assert issubclass(exceptions.InvalidSpecError, ValueError)
    assert str(exceptions.NotFoundError("plain message")) == "plain message"
    from keel.store._filter import FilterSyntaxError

    assert issubclass(FilterSyntaxError, exceptions.InvalidSpecError)
