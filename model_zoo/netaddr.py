"""Addresses: is one on this machine, and how to show one without the credentials it carries."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback host."""
    return is_loopback_host(urlsplit(url).hostname or "")


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***`` (proxy URLs carry them)."""
    raw = url.strip()
    parts = urlsplit(raw if "://" in raw else "http://" + raw)
    if parts.username is None and parts.password is None:
        return raw
    host = parts.netloc.rpartition("@")[2]
    shown = urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))
    return shown if "://" in raw else shown.split("://", 1)[1]
