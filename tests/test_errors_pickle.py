"""Every model-zoo error survives pickling (Ray actors, multiprocessing) with its type, message,
fields and exit code, whatever its ``__init__`` takes."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

from model_zoo import errors


def _all_error_types() -> list[type[errors.ModelZooError]]:
    return sorted(
        (
            c
            for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, errors.ModelZooError)
        ),
        key=lambda c: c.__name__,
    )


def _sample(name: str, annotation: Any) -> Any:
    """A plausible argument for a parameter, from its annotation's text."""
    text = str(annotation)
    if "Sequence" in text or "list" in text or "tuple" in text:
        return ["a", "b"]
    if "dict" in text or "Mapping" in text:
        return {"k": "v"}
    if "float" in text:
        return 2.5
    if "int" in text:
        return 3
    if "bool" in text:
        return True
    if "Path" in text:
        return f"/tmp/{name}"
    return f"{name}-value"


def _instance(cls: type[errors.ModelZooError]) -> errors.ModelZooError:
    if cls is errors.FetchFailedError:  # carries the per-file errors and their exit code
        inner = _instance(errors.DownloadFailedError)
        return errors.FetchFailedError(
            [("a.bin", inner), ("b.bin", _instance(errors.HashMismatchError))], None
        )
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    args, kwargs = [], {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            continue
        value = _sample(p.name, p.annotation)
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return cls(*args, **kwargs)


ERROR_TYPES = _all_error_types()


def test_there_are_many_error_types_including_the_lock_timeout() -> None:
    names = {c.__name__ for c in ERROR_TYPES}
    assert len(ERROR_TYPES) > 30 and "LockTimeoutError" in names and "RepoNotFoundError" in names


@pytest.mark.parametrize("cls", ERROR_TYPES, ids=lambda c: c.__name__)
def test_round_trips_through_pickle(cls: type[errors.ModelZooError]) -> None:
    exc = _instance(cls)
    exc.extra_note = "set after raising"  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert str(back) == str(exc) and back.message == exc.message
    assert back.fields == exc.fields and back.to_dict() == exc.to_dict()
    assert back.exit_code == exc.exit_code
    assert back.extra_note == "set after raising"  # type: ignore[attr-defined]
    for key, value in exc.fields.items():
        assert getattr(back, key) == value
    assert isinstance(back, errors.ModelZooError)


def test_a_fetch_failure_keeps_its_per_file_errors_and_their_exit_code() -> None:
    exc = _instance(errors.FetchFailedError)
    back = pickle.loads(pickle.dumps(exc))
    assert back.exit_code == exc.first.exit_code
    assert [(p, type(e), e.message) for p, e in back.failures] == [
        (p, type(e), e.message) for p, e in exc.failures
    ]
