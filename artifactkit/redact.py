"""The one redaction: what must never reach a terminal, a log or a report.

URLs may carry credentials (`http://user:password@host/…`, `ftp://…`) and presigned URLs carry
signatures in their query strings. Every URI artifactkit shows (Store.uri, run URIs, error
messages) goes through redact_uri; text from other libraries (exception messages) through redact.
A leaf module: backends use it, so it imports nothing of artifactkit.
"""

from __future__ import annotations

import re
from typing import Iterable

# user@ or user:password@; a password typed with '/' or '@' in it (they should be %-encoded) is
# still a password: after "user:" everything up to the last '@' of the word goes
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^/@\s:]*:\S*|[^/@\s]+)@", re.IGNORECASE)
_QUERY = re.compile(r"\?[^\s\"']*")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """A URL without user:password@ and query string; a local path (no scheme) unchanged, since
    '?' and '@' are ordinary characters in file names."""
    if not _URL.match(uri):
        return uri
    return _QUERY.sub("", _USERINFO.sub(lambda m: m.group("scheme"), uri))


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Free text (an exception message) without user:password@ in any URL it holds, query strings
    (shown as ?…), or any known secret value; one line only."""
    text = _QUERY.sub("?…", _USERINFO.sub(lambda m: m.group("scheme"), text))
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return " ".join(text.split())
