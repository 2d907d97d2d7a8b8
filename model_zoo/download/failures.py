"""Which typed error a failed source, or a file no source could deliver, stands for."""

from __future__ import annotations

from ..errors import (
    DownloadFailedError,
    GatedRepoError,
    HashMismatchError,
    HubProtocolError,
    HubServerError,
    HubUnreachableError,
    ModelZooError,
    NotOnWhiteListError,
    RateLimitedError,
    SizeMismatchError,
)
from .http_fetch import TransferError
from .state import CandidateState, FileState


def error_for(f: FileState, cand: CandidateState, exc: TransferError) -> ModelZooError:
    """The typed error one failed candidate stands for (its message names the source)."""
    src, url = cand.source, cand.remote.url
    if exc.kind == "size":
        return SizeMismatchError(f.job.path, f.size or -1, served_size(exc.reason), source=src)
    if exc.status == 429:
        return RateLimitedError(src, retry_after=exc.retry_after, url=url)
    if exc.status in (401, 403, 418):
        from ..hubs.catalog import HUBS

        info = HUBS.get(src)  # name the variable that would carry a token for this hub
        if exc.status == 418:
            return NotOnWhiteListError(src, f.job.path)
        token_env = info.token_envs[0] if info is not None and info.token_envs else None
        advice = info.credentials_advice if info is not None else None
        return GatedRepoError(
            src, f.job.path, token_env=token_env, status=exc.status, advice=advice
        )
    if exc.status is not None and exc.status >= 500:
        return HubServerError(src, exc.status, url=url, detail=f"for {f.job.path}")
    if exc.status is not None or exc.kind == "protocol":
        return HubProtocolError(src, f"{exc.reason} for {f.job.path}", url=url)
    return HubUnreachableError(src, url, reason=exc.reason)


def served_size(reason: str) -> int:
    try:
        return int(reason.split()[1])
    except (IndexError, ValueError):
        return -1


MISMATCH_ADVICE = (
    " No source served the published bytes: retry later (a mirror may be refreshing), or pull "
    "from another hub with --source or --sources."
)


def final_error(f: FileState) -> ModelZooError:
    """The error for a file no candidate could deliver, saying what to do next."""
    errors = [c.error for c in f.cands if c.error is not None]
    if errors and all(isinstance(e, (HashMismatchError, SizeMismatchError)) for e in errors):
        last = errors[-1]
        if MISMATCH_ADVICE not in last.message:
            last.message += MISMATCH_ADVICE
        return last
    return DownloadFailedError(f.job.path, [_reason(c.source, c.dead) for c in f.cands if c.dead])


def _reason(source: str, dead: str) -> str:
    """``source: why``, once: the hubs' messages already start with their name, and end with a
    full stop that the joined message adds itself."""
    text = dead.strip().rstrip(".")
    return text if text.startswith(f"{source}:") else f"{source}: {text}"
