"""Every model-zoo error survives pickling (Ray actors, multiprocessing) with its type, message,
fields and exit code, whatever its ``__init__`` takes; its fields are declared, typed attributes
(what mypy and the ``--json`` output read); and it is the builtin its failure is an instance of
(``ValueError`` for usage errors, ``OSError`` for local disk and file errors), no more."""

from __future__ import annotations

import inspect
import json
import pickle
import types
import typing
from pathlib import Path
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


# ---------------------------------------------------------------- declared fields


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the (evaluated) annotation ``hint``: the forms errors.py uses."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


@pytest.mark.parametrize("cls", ERROR_TYPES, ids=lambda c: c.__name__)
def test_fields_are_the_declared_annotations_and_hold_their_types(
    cls: type[errors.ModelZooError],
) -> None:
    hints = typing.get_type_hints(cls)
    declared = [n for n, h in hints.items() if typing.get_origin(h) is not typing.ClassVar]
    assert sorted(cls.field_names) == sorted(declared)
    assert not set(cls.field_names) & {"message", "details", "fields", "args", "errno", "strerror"}
    exc = _instance(cls)
    # every keyword a specific type passes is declared: none falls into the untyped details
    assert exc.details == {}
    assert list(exc.fields) == list(cls.field_names)
    for back in (exc, pickle.loads(pickle.dumps(exc))):
        for name in cls.field_names:
            assert name in vars(back), f"{cls.__name__}.{name} is declared but never set"
            value = getattr(back, name)
            assert _conforms(value, hints[name]), (cls.__name__, name, value, hints[name])
        assert back.fields == exc.fields
    json.dumps(exc.to_dict())  # the --json form stays serialisable


def test_the_generic_types_keep_undeclared_keywords_as_details_not_attributes() -> None:
    exc = errors.UsageError("context must be >= 0, got -1", context=-1)
    assert exc.details == {"context": -1} and exc.fields == {"context": -1}
    assert not hasattr(exc, "context")
    assert exc.to_dict() == {"error": "UsageError", "message": str(exc), "context": -1}
    back = pickle.loads(pickle.dumps(exc))
    assert back.details == {"context": -1} and back.to_dict() == exc.to_dict()


@pytest.mark.slow
def test_mypy_sees_every_declared_field_with_its_type(tmp_path: Path) -> None:
    """What a type checker reads: each field's revealed type is its annotation, and a name that
    is not declared is an error (the check is not vacuous)."""
    api = pytest.importorskip("mypy.api", reason="mypy is the type checker CI runs")
    lines = ["from typing import reveal_type", "from model_zoo import errors", ""]
    expected: dict[int, str] = {}
    for cls in ERROR_TYPES:
        lines.append(f"def check_{cls.__name__}(e: errors.{cls.__name__}) -> None:")
        lines.append("    e.message.upper()")
        for name in cls.field_names:
            lines.append(f"    reveal_type(e.{name})")
            expected[len(lines)] = _annotation_text(cls, name)
    lines.append("def check_undeclared(e: errors.RepoNotFoundError) -> None:")
    lines.append("    e.no_such_field")
    undeclared_line = len(lines)
    snippet = tmp_path / "snippet.py"
    snippet.write_text("\n".join(lines) + "\n")
    out, err, _status = api.run(
        [
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            str(snippet),
        ]
    )
    revealed: dict[int, str] = {}
    problems: list[str] = []
    for line in out.splitlines():
        where, _, rest = line.partition(": ")
        number = int(where.rsplit(":", 1)[1])
        if rest.startswith("note: Revealed type is "):
            revealed[number] = rest.removeprefix("note: Revealed type is ").strip('"')
        else:
            problems.append(line)
    assert [p for p in problems if f":{undeclared_line}:" in p and "no_such_field" in p]
    assert [p for p in problems if f":{undeclared_line}:" not in p] == [], err
    assert {n: t.replace("builtins.", "") for n, t in revealed.items()} == expected


def _annotation_text(cls: type, name: str) -> str:
    """The annotation of ``name`` as written in errors.py, from the class that declares it."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return str(vars(klass)["__annotations__"][name])
    raise AssertionError(f"{cls.__name__}.{name} has no annotation")


# ---------------------------------------------------------------- builtin bases

USAGE = {c for c in ERROR_TYPES if issubclass(c, errors.UsageError)}
LOCAL_IO = {errors.DiskSpaceError, errors.LocalWriteError, errors.LockTimeoutError}


def test_the_usage_and_local_io_families_are_what_they_should_be() -> None:
    assert {errors.UnknownModelError, errors.AmbiguousNameError, errors.RegistryError} <= USAGE
    assert {errors.ConfigError, errors.InvalidConversationError, errors.ExportTargetError} <= USAGE
    assert not USAGE & LOCAL_IO


@pytest.mark.parametrize("cls", ERROR_TYPES, ids=lambda c: c.__name__)
def test_builtin_bases(cls: type[errors.ModelZooError]) -> None:
    """Usage errors are ValueErrors and local disk/file errors OSErrors; a hub's or an
    integrity error is neither, so ``except OSError`` around local I/O cannot catch one."""
    exc = _instance(cls)
    for e in (exc, pickle.loads(pickle.dumps(exc))):
        assert isinstance(e, ValueError) is (cls in USAGE)
        assert isinstance(e, OSError) is (cls in LOCAL_IO)
        assert isinstance(e, TimeoutError) is (cls is errors.LockTimeoutError)
        assert isinstance(e, errors.ModelZooError)


@pytest.mark.parametrize("cls", ERROR_TYPES, ids=lambda c: c.__name__)
def test_args_str_and_repr_are_the_whole_message(cls: type[errors.ModelZooError]) -> None:
    exc = _instance(cls)
    for e in (exc, pickle.loads(pickle.dumps(exc))):
        assert e.args == (e.message,) and str(e) == e.message and e.message
        assert repr(e) == f"{cls.__name__}({e.message!r})"


@pytest.mark.parametrize(
    "exc",
    [
        # two strings: OSError("a", "b") would take them as (errno, strerror)
        errors.LocalWriteError("/data/models", "Permission denied"),
        errors.DiskSpaceError("/data/models", 10**9, 5),
        errors.LockTimeoutError("/data/locks/m.lock", 30.0, "host:12"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_oserror_constructor_does_not_take_the_arguments_apart(exc: OSError) -> None:
    for e in (exc, pickle.loads(pickle.dumps(exc))):
        assert e.errno is None and e.strerror is None and e.filename is None
        assert e.args == (str(e),) and str(e).startswith(("cannot write", "not enough", "timed"))
        assert "/data/" in str(e)
    with pytest.raises(OSError, match="^cannot write /data/models: Permission denied"):
        raise errors.LocalWriteError("/data/models", "Permission denied")


def test_usage_errors_are_caught_as_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'") as info:
        raise errors.UnknownModelError("nope", ["internlm2-chat-7b"])
    assert info.value.name == "nope" and info.value.exit_code == errors.EXIT_USAGE


def test_a_message_set_later_keeps_args_and_pickling_in_step() -> None:
    """store.verify rewrites a HashMismatchError's message to name the whole path."""
    exc = errors.HashMismatchError("a.bin", "0" * 64, "1" * 64)
    exc.message = "/store/m/a.bin: sha256 differs"
    assert str(exc) == exc.message and exc.args == (exc.message,)
    back = pickle.loads(pickle.dumps(exc))
    assert str(back) == "/store/m/a.bin: sha256 differs" and back.expected == "0" * 64


def test_a_model_lock_timeout_is_not_reported_as_a_write_error(tmp_path: Path) -> None:
    """``except OSError`` around taking the model lock turns local failures into
    LocalWriteError; a LockTimeoutError, an OSError too, must pass through as itself."""
    from model_zoo.download.local import prepare_target
    from model_zoo.store.locking import ProcessLock

    lock = tmp_path / "locks" / "m.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
    with pytest.raises(errors.LockTimeoutError, match="elsewhere:1"):
        prepare_target(tmp_path / "m", ProcessLock(lock, mode="lockfile", timeout=0.2))
