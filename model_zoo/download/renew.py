"""Fresh URLs for files whose presigned URLs expired during a pull: list the repository again.

OpenXLab lists object-store URLs that stop working after a while; a pull of a large checkpoint
can outlive them. The engine calls a ``Renew`` (``engine.Renew``) when such a URL is refused;
this one lists the source again (one listing per wave of expiries, however many files and
ranges hit it at once) and hands back the file's new entry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from ..hubs.base import Manifest, RemoteFile


class ListingRenewer:
    """``renew(source, path, stale)`` for the engine, over one listing function per source."""

    def __init__(self, listings: Mapping[str, Callable[[], Manifest]]) -> None:
        self._listings = dict(listings)
        self._latest: dict[str, dict[str, RemoteFile]] = {}
        self._lock = threading.Lock()
        self.listed = 0  # listings made, for reports and tests

    def __call__(self, source: str, path: str, stale: RemoteFile) -> RemoteFile | None:
        listing = self._listings.get(source)
        if listing is None:
            return None
        with self._lock:  # the others wait for this listing instead of making their own
            latest = self._latest.get(source)
            if latest is not None and path in latest and latest[path].url != stale.url:
                return latest[path]  # renewed by an earlier call of this wave
            latest = listing().by_path()
            self.listed += 1
            self._latest[source] = latest
            return latest.get(path)
