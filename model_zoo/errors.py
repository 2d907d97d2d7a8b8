"""Every failure a user can act on, as one exception type with structured fields.

The library raises these with plain, complete messages (what went wrong and what to do);
the CLI formats them and maps ``exit_code`` to the process status:

    0 ok, 1 failure, 2 usage / unknown name, 3 integrity failure, 4 network.

Add a new type here (not elsewhere) when a new failure needs a different user action.
Never put a token or other secret into a message or a field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .units import human_size

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_NETWORK = 4


class ModelZooError(Exception):
    """Base of all model-zoo errors.

    A type declares its structured fields as class-level annotations (``hub: str``) and passes
    them as keywords to this constructor, which sets them as attributes: type checkers see them,
    and ``fields`` lists them for ``--json`` output. Attributes that are not fields (objects for
    code, such as ``FetchFailedError.failures``) are annotated in ``__init__`` instead. The
    generic types (``UsageError``, ``IntegrityError``, ...) also take undeclared keywords: those
    are ``details``, shown in ``fields`` but not attributes; raise a specific type when code needs
    to read one.

    Some types also derive from the builtin their failure is an instance of (``ValueError`` for
    usage errors, ``OSError`` for local disk and file errors), so that generic callers catch them.
    """

    exit_code: ClassVar[int] = EXIT_FAILURE
    #: the declared fields of this type and its bases, in order (see ``__init_subclass__``)
    field_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Collect the annotations of the new type and its bases, base first, ClassVars left out."""
        super().__init_subclass__(**kwargs)
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                if not str(annotation).removeprefix("typing.").startswith("ClassVar"):
                    names[name] = None
        cls.field_names = tuple(names)

    def __init__(self, message: str, **fields: Any) -> None:
        # one argument only: OSError reads (errno, strerror, ...) out of two or more
        super().__init__(message)
        self.details: dict[str, Any] = {}
        for key, value in fields.items():
            if key in self.field_names:
                setattr(self, key, value)
            else:
                self.details[key] = value

    @property
    def message(self) -> str:
        """The whole message; kept in ``args`` so that ``args``, ``str()`` and pickling agree."""
        return str(self.args[0])

    @message.setter
    def message(self, value: str) -> None:
        self.args = (value,)

    @property
    def fields(self) -> dict[str, Any]:
        """The structured details: every declared field, then any undeclared ``details``."""
        return {name: getattr(self, name) for name in self.field_names} | self.details

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable whatever the subclass's ``__init__`` takes (Ray, multiprocessing): rebuilt
        from the message, then the instance dict (fields, details, anything set later) restored."""
        return (_rebuild_error, (type(self), self.message), self.__dict__)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for ``--json`` output."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        for key, value in self.fields.items():
            out[key] = (
                value
                if isinstance(value, (str, int, float, bool, type(None), list, dict))
                else str(value)
            )
        return out


def _rebuild_error(cls: type[ModelZooError], message: str) -> ModelZooError:
    """Unpickle a ModelZooError (see ``ModelZooError.__reduce__``); pickle restores its dict."""
    exc = cls.__new__(cls)
    ModelZooError.__init__(exc, message)
    return exc


# ---------------------------------------------------------------- usage and names (exit 2)


class UsageError(ModelZooError, ValueError):
    """Bad arguments or options that the user must change (a ``ValueError`` too)."""

    exit_code = EXIT_USAGE


class UnknownModelError(UsageError):
    """A name that no registry entry answers to."""

    name: str
    suggestions: list[str]

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        msg = f"unknown model {name!r}."
        if suggestions:
            msg += " Did you mean: " + ", ".join(suggestions) + "?"
        msg += " Run `model-zoo list` or `model-zoo search TEXT` to see every model."
        super().__init__(msg, name=name, suggestions=list(suggestions))


class AmbiguousNameError(UsageError):
    """A name that several entries answer to once separators are ignored."""

    name: str
    candidates: list[str]

    def __init__(self, name: str, candidates: Sequence[str]) -> None:
        msg = (
            f"model name {name!r} is ambiguous: it matches "
            + ", ".join(candidates)
            + ". Use one of these exact names."
        )
        super().__init__(msg, name=name, candidates=list(candidates))


@dataclass(frozen=True)
class RegistryProblem:
    """One problem found in a registry file: where (entry, field) and what."""

    location: str
    message: str
    entry: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.location
        if self.entry:
            where += f": entry {self.entry!r}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"


class RegistryError(UsageError):
    """A registry file that does not validate. ``problems`` lists every problem found."""

    source: str
    problems: list[str]

    def __init__(self, source: str, problems: Sequence[RegistryProblem]) -> None:
        lines = [f"registry {source} is invalid ({len(problems)} problem(s)):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines), source=source, problems=[str(p) for p in problems])
        self.problem_list: list[RegistryProblem] = list(problems)


class ConfigError(UsageError):
    """A settings file or environment variable with a value model-zoo cannot use."""

    setting: str | None

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message, setting=setting)


class MissingDependencyError(ModelZooError):
    """An optional package the requested feature needs is not installed."""

    package: str
    extra: str | None

    def __init__(self, package: str, *, extra: str | None = None, feature: str = "") -> None:
        how = f"pip install 'model-zoo[{extra}]'" if extra else f"pip install {package}"
        what = f" for {feature}" if feature else ""
        super().__init__(
            f"{package} is needed{what} but is not installed. Install it with: {how}",
            package=package,
            extra=extra,
        )


# ---------------------------------------------------------------- hubs and network (exit 4)


class HubError(ModelZooError):
    """A hub answered in a way that stops the operation. ``hub`` names it."""

    exit_code = EXIT_NETWORK


class RepoNotFoundError(HubError):
    hub: str
    repo_id: str
    url: str | None

    def __init__(self, hub: str, repo_id: str, *, url: str | None = None) -> None:
        super().__init__(
            f"{hub}: repository {repo_id!r} was not found. Check the id, or try another source "
            "with --source.",
            hub=hub,
            repo_id=repo_id,
            url=url,
        )


class RepoNotFoundOrPrivateError(RepoNotFoundError):
    """Asked without a token, the hub will not say whether the repository is missing or private."""

    token_env: str | None

    def __init__(
        self, hub: str, repo_id: str, *, token_env: str | None, url: str | None = None
    ) -> None:
        how = f"set {token_env} to a token with access" if token_env else "log in to the hub"
        HubError.__init__(
            self,
            f"{hub}: repository {repo_id!r} was not found, or it is private and no token was sent. "
            f"Check the id; if it is private, {how}; or try another source with --source.",
            hub=hub,
            repo_id=repo_id,
            token_env=token_env,
            url=url,
        )


class RevisionNotFoundError(HubError):
    """The hub has the repository but not that commit or tag: the user's input to fix (exit 2)."""

    hub: str
    repo_id: str
    revision: str

    exit_code = EXIT_USAGE

    def __init__(self, hub: str, repo_id: str, revision: str) -> None:
        super().__init__(
            f"{hub}: revision {revision!r} of {repo_id!r} was not found. Check the commit or tag, "
            "or drop --revision to take the default branch.",
            hub=hub,
            repo_id=repo_id,
            revision=revision,
        )


class RevisionMovedError(HubError):
    """A branch kept moving to new commits while it was being pulled."""

    hub: str
    repo_id: str
    revision: str
    moves: int

    def __init__(self, hub: str, repo_id: str, revision: str, moves: int) -> None:
        super().__init__(
            f"{hub}: {repo_id!r} {revision} moved to a new commit {moves} times during the pull, "
            "so its files could not be fetched from one commit. Retry later, or pin a commit with "
            "--revision.",
            hub=hub,
            repo_id=repo_id,
            revision=revision,
            moves=moves,
        )


class GatedRepoError(HubError):
    """Unauthorised or gated: the user needs a token (``token_env`` says which variable).

    ``advice`` replaces "Set TOKEN_ENV to a token with access" where a hub's credentials are
    something else (OpenXLab's access key pair).
    """

    hub: str
    repo_id: str
    token_env: str | None
    status: int | None

    def __init__(
        self,
        hub: str,
        repo_id: str,
        *,
        token_env: str | None,
        status: int | None = None,
        advice: str | None = None,
    ) -> None:
        how = advice or (
            f"Set {token_env} to a token with access" if token_env else "Log in to the hub"
        )
        code = f" (HTTP {status})" if status else ""
        super().__init__(
            f"{hub}: access to {repo_id!r} was refused{code}. {how}, and accept the model's terms "
            "on the hub's web page if it asks.",
            hub=hub,
            repo_id=repo_id,
            token_env=token_env,
            status=status,
        )


class NotOnWhiteListError(HubError):
    """The hub serves this repository only to a white list of accounts or networks (Modelers'
    HTTP 418): a token is no help unless its account is on the list."""

    hub: str
    repo_id: str
    status: int

    def __init__(self, hub: str, repo_id: str, *, web_url: str | None = None) -> None:
        where = f" on {web_url}" if web_url else " on the model's web page"
        super().__init__(
            f"{hub}: {repo_id!r} is served only to a white list, and this account or network is "
            f"not on it (HTTP 418). Ask the publisher for access{where}, or use another source "
            "with --source.",
            hub=hub,
            repo_id=repo_id,
            status=418,
        )


class CredentialsRejectedError(HubError):
    """The hub refused the credentials themselves (an access key pair), before any repository."""

    hub: str
    origin: str
    detail: str

    def __init__(self, hub: str, origin: str, detail: str) -> None:
        super().__init__(
            f"{hub}: the access key pair from {origin} was refused ({detail}). Check both keys "
            "(an access key and its secret key, as `openxlab login` stores them), or set "
            "OPENXLAB_TOKEN to a token instead.",
            hub=hub,
            origin=origin,
            detail=detail,
        )


class RateLimitedError(HubError):
    hub: str
    retry_after: float | None
    url: str | None

    def __init__(
        self, hub: str, *, retry_after: float | None = None, url: str | None = None
    ) -> None:
        wait = f" Retry after {retry_after:.0f} s" if retry_after else " Retry later"
        super().__init__(
            f"{hub}: rate-limited (HTTP 429).{wait}, or use another source with --source.",
            hub=hub,
            retry_after=retry_after,
            url=url,
        )


class HubServerError(HubError):
    hub: str
    status: int
    url: str | None

    def __init__(self, hub: str, status: int, *, url: str | None = None, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"{hub}: server error HTTP {status}{extra}. The hub may be having trouble; retry later "
            "or use another source with --source.",
            hub=hub,
            status=status,
            url=url,
        )


class HubProtocolError(HubError):
    """The hub answered, but not in the shape its protocol promises."""

    hub: str
    detail: str
    url: str | None

    def __init__(self, hub: str, detail: str, *, url: str | None = None) -> None:
        super().__init__(
            f"{hub}: unexpected answer ({detail}). If you set a custom endpoint, check that it "
            "serves this hub's protocol.",
            hub=hub,
            detail=detail,
            url=url,
        )


class HubUnreachableError(HubError):
    hub: str
    endpoint: str
    reason: str

    def __init__(self, hub: str, endpoint: str, *, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"{hub}: cannot reach {endpoint}{why}. Check your network or proxy, set the hub's "
            "endpoint variable to a mirror, or use another source with --source.",
            hub=hub,
            endpoint=endpoint,
            reason=reason,
        )


class NoSourceError(HubError):
    """No configured source can serve the requested model."""

    model: str
    tried: list[str]
    reasons: list[str]

    def __init__(self, model: str, tried: Sequence[str], *, reasons: Sequence[str] = ()) -> None:
        # one line per hub, each reason and its advice whole: cut to fit one line, the advice of
        # every hub ended mid-word ("Check your netwo…")
        detail = "".join(f"\n  {r}" for r in reasons) if reasons else " none available."
        super().__init__(
            f"no source could serve {model!r} (tried: {', '.join(tried) or 'none'}):{detail}\n"
            "Run `model-zoo doctor` to check each hub, or set --source.",
            model=model,
            tried=list(tried),
            reasons=list(reasons),
        )


class DownloadFailedError(HubError):
    """One file could not be fetched from any of its sources; ``reasons`` says why, per source."""

    path: str
    reasons: list[str]

    def __init__(self, path: str, reasons: Sequence[str]) -> None:
        super().__init__(
            f"could not download {path}: " + "; ".join(reasons) + ". Partial bytes are kept, so "
            "running the pull again resumes it; or use another source with --source.",
            path=path,
            reasons=list(reasons),
        )


class FetchFailedError(ModelZooError):
    """Some files of a fetch could not be delivered; the others were completed first.

    ``failures`` pairs each failed path with its own error (a DownloadFailedError, a
    HashMismatchError, ...); ``first`` is the first of those, whose exit code and message this
    error carries. ``report`` is the engine's ``FetchReport`` of everything the fetch did.
    """

    paths: list[str]

    def __init__(self, failures: Sequence[tuple[str, ModelZooError]], report: Any) -> None:
        first = failures[0][1]
        more = f" ({len(failures) - 1} more file(s) failed too)" if len(failures) > 1 else ""
        super().__init__(first.message + more, paths=[p for p, _ in failures])
        self.failures: list[tuple[str, ModelZooError]] = list(failures)
        self.first: ModelZooError = first
        self.report: Any = report
        self.exit_code = first.exit_code  # type: ignore[misc]  # integrity (3), network (4), ...

    exit_code: ClassVar[int] = EXIT_NETWORK  # replaced per instance by the first failure's


class OfflineError(ModelZooError):
    """Offline mode is on and what was asked for is not in the store."""

    what: str

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} is not in the local store and offline mode is on "
            "(MODEL_ZOO_OFFLINE / HF_HUB_OFFLINE). Unset it and pull, or pull on a connected "
            "machine and copy the store.",
            what=what,
        )


# ---------------------------------------------------------------- integrity (exit 3)


class IntegrityError(ModelZooError):
    """Bytes or structure that do not match what they must be."""

    exit_code = EXIT_INTEGRITY


class HashMismatchError(IntegrityError):
    path: str
    expected: str
    actual: str
    source: str | None

    def __init__(self, path: str, expected: str, actual: str, *, source: str | None = None) -> None:
        src = f" from {source}" if source else ""
        super().__init__(
            f"{path}: sha256 mismatch{src} (expected {expected}, got {actual}). The bytes were "
            "discarded.",
            path=path,
            expected=expected,
            actual=actual,
            source=source,
        )


class SizeMismatchError(IntegrityError):
    path: str
    expected: int
    actual: int
    source: str | None

    def __init__(self, path: str, expected: int, actual: int, *, source: str | None = None) -> None:
        src = f" from {source}" if source else ""
        super().__init__(
            f"{path}: size mismatch{src} (expected {expected} bytes, got {actual}).",
            path=path,
            expected=expected,
            actual=actual,
            source=source,
        )


class UnsafePathError(IntegrityError):
    """A remote listing names a path that would land outside the target directory."""

    path: str
    reason: str
    source: str | None

    def __init__(self, path: str, reason: str, *, source: str | None = None) -> None:
        super().__init__(
            f"refusing remote path {path!r}: {reason}. Nothing was written for it.",
            path=path,
            reason=reason,
            source=source,
        )


class LockMismatchError(IntegrityError):
    """The remote no longer matches what a lock file recorded."""

    model: str
    detail: str

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(
            f"{model}: the remote does not match the lock file ({detail}). Someone changed the "
            "repository; re-lock deliberately with `model-zoo lock` if the change is wanted.",
            model=model,
            detail=detail,
        )


class CheckpointError(IntegrityError):
    """A checkpoint on disk is damaged or incomplete (names the file)."""

    path: str
    detail: str

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"{path}: {detail}. Pull the model again to repair it; `model-zoo verify` lists every "
            "problem.",
            path=path,
            detail=detail,
        )


# ---------------------------------------------------------------- local resources (exit 1)


class DiskSpaceError(ModelZooError, OSError):
    """Not enough free space for what a pull must write (an ``OSError`` too, as ENOSPC would be)."""

    path: str
    needed: int
    free: int

    def __init__(self, path: str, needed: int, free: int) -> None:
        super().__init__(
            f"not enough disk space at {path}: need {human_size(needed)}, {human_size(free)} free. "
            "Free space, or pull elsewhere with --local-dir or MODEL_ZOO_HOME. Partial files are "
            "kept and the next pull resumes them.",
            path=path,
            needed=needed,
            free=free,
        )


class LocalWriteError(ModelZooError, OSError):
    """A file or directory model-zoo must write cannot be created (permissions, a file in the way);
    an ``OSError`` too."""

    path: str
    reason: str

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"cannot write {path}: {reason}. Check that the directory exists or can be created "
            "and is writable, or choose another place (--local-dir, MODEL_ZOO_HOME, --output).",
            path=path,
            reason=reason,
        )


class IncompatibleCheckpointError(ModelZooError):
    """A checkpoint model-zoo cannot load as asked (format, architecture, tensors)."""

    path: str
    detail: str

    def __init__(self, path: str, detail: str, *, hint: str = "") -> None:
        msg = f"{path}: {detail}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg, path=path, detail=detail)


class OllamaCreateError(ModelZooError):
    """``ollama create`` ran and failed; the Modelfile it was given stays for a rerun by hand."""

    command: list[str]
    returncode: int
    output: str
    modelfile: str

    def __init__(
        self, command: Sequence[str], returncode: int, output: str, modelfile: str
    ) -> None:
        tail = output.strip()[-1500:]
        said = f": {tail}" if tail else ""
        super().__init__(
            f"`{' '.join(command)}` failed (exit {returncode}){said}. The Modelfile is "
            f"{modelfile}; check that the Ollama server is running (`ollama serve`) and run the "
            "command again.",
            command=list(command),
            returncode=returncode,
            output=tail,
            modelfile=modelfile,
        )


class InputTooLongError(UsageError):
    """A reward-model input longer than the model's limit (and truncation was not asked for)."""

    index: int
    tokens: int
    limit: int

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(
            f"input {index} has {tokens} tokens, over the limit of {limit}. Shorten it, or pass "
            f"truncate=True (CLI: --truncate) to keep its last {limit} tokens, reward token "
            "included.",
            index=index,
            tokens=tokens,
            limit=limit,
        )


class InvalidConversationError(UsageError):
    """A conversation that is not a list of ``{"role": str, "content": str}`` messages."""

    field: str
    detail: str

    HINT: ClassVar[str] = (
        'A conversation is a list of {"role": ..., "content": ...} messages (OpenAI style).'
    )

    def __init__(self, field: str, detail: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{field}: {detail}. {self.HINT if hint is None else hint}".rstrip(),
            field=field,
            detail=detail,
        )


class InvalidReferenceInputError(InvalidConversationError):
    """A reference-based (POLAR) input that is not ``{"prompt", "reference", "output"}``, each a
    string or a list of messages. A subclass so that code handling malformed conversations (the
    reward server's 400 answers) handles these the same way."""

    HINT: ClassVar[str] = (
        'A reference-based input is {"prompt": ..., "reference": ..., "output": ...}, each a '
        'string or a list of {"role": ..., "content": ...} messages.'
    )


class ScoringStyleError(UsageError):
    """A reward model given the other scoring style's inputs: conversations for a reference-based
    model (POLAR), or a reference answer for a conversation model (InternLM2-Reward).

    ``style`` is the model's scoring style, ``given`` the style of what it was given.
    """

    model: str
    style: str
    given: str

    def __init__(self, model: str, style: str, given: str) -> None:
        if style == "reference-based":
            msg = (
                f"{model} is a reference-based reward model (POLAR): it scores an output against a "
                "reference answer to the same prompt, not a conversation. Call score(prompt=..., "
                'reference=..., output=...), score_batch([{"prompt": ..., "reference": ..., '
                '"output": ...}]) or rank(prompt, reference, outputs).'
            )
        else:
            msg = (
                f"{model} scores conversations and takes no reference answer. Give it lists of "
                '{"role": ..., "content": ...} messages (score, score_batch, rank), or load a '
                "reference-based reward model (POLAR) for prompt, reference and output; "
                "`model-zoo info NAME` shows a reward model's scoring."
            )
        super().__init__(msg, model=model, style=style, given=given)


class RewardServerError(ModelZooError):
    """A remote reward server that cannot be reached or refuses a request."""

    url: str
    detail: str
    status: int | None

    exit_code = EXIT_NETWORK

    def __init__(self, url: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(
            f"reward server {url}: {detail}. Check that `model-zoo serve-reward` runs there, the "
            "URL and the API key (MODEL_ZOO_API_KEY).",
            url=url,
            detail=detail,
            status=status,
        )


class ModelNotPulledError(ModelZooError):
    name: str

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name} is not in the local store. Pull it first: model-zoo pull {name}",
            name=name,
        )


class TokenizerExportError(IncompatibleCheckpointError):
    """A checkpoint tokenizer that model-zoo cannot describe as a ``tokenizer.json`` for an
    engine."""

    def __init__(self, detail: str, *, path: str = "tokenizer.model") -> None:
        super().__init__(
            path,
            detail,
            hint="Serve it with model-zoo's own runner (backend='transformers') instead.",
        )


class ExportTargetError(UsageError):
    """An export directory that cannot be used as asked (not empty, or inside the checkpoint)."""

    path: str
    detail: str

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"{path}: {detail}. Choose an empty or new directory, or pass --force to replace an "
            "earlier export.",
            path=path,
            detail=detail,
        )


class EngineStartError(ModelZooError):
    """A serving engine (vLLM, LMDeploy) that exited or never answered while starting."""

    engine: str
    detail: str
    log_tail: str
    command: list[str]

    def __init__(
        self, engine: str, detail: str, *, log_tail: str = "", command: Sequence[str] = ()
    ) -> None:
        msg = f"{engine} did not start: {detail}."
        if log_tail:
            msg += f" Its last output:\n{log_tail}"
        super().__init__(
            msg, engine=engine, detail=detail, log_tail=log_tail, command=list(command)
        )


class LockTimeoutError(ModelZooError, TimeoutError):
    """Another process held a lock for longer than we were willing to wait (a ``TimeoutError``,
    so an ``OSError``, like the standard library's lock timeouts)."""

    path: str
    waited: float
    owner: str

    def __init__(self, path: str, waited: float, owner: str = "") -> None:
        who = f" (held by {owner})" if owner else ""
        super().__init__(
            f"timed out after {waited:.0f} s waiting for the lock {path}{who}. Another model-zoo "
            "process is pulling the same model; wait for it, or remove the lock file if that "
            "process is gone.",
            path=path,
            waited=waited,
            owner=owner,
        )


__all__ = [name for name in dir() if name.endswith("Error") or name.startswith("EXIT_")] + [
    "RegistryProblem",
]
