"""Secrets out of everything diloco-sweep prints or stores: the one redaction function.

pyarrow accepts credentials inside a URI (``s3://KEY:SECRET@bucket/prefix``), and a user may
pass one as ``--output`` or write it into a spec. The URI itself must keep them (the trials on
other nodes open the store with it), so the secret is cut where text leaves the program: the
command line's stdout and stderr (``RedactingStream``, which also covers Ray's and Tune's own
lines and every error message), ``sweep.json`` (``runs[].argv``, the spec's ``output``) and
the report's footer (the CLI passes a redacted ``source``).
"""

from __future__ import annotations

import re
from typing import Any, TextIO

__all__ = ["redact", "redact_data", "RedactingStream", "MASK"]

MASK = "***"
# the user-info part of any scheme://user[:password]@host, and key-like query parameters
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/@\s?#]+)@")
_QUERY = re.compile(r"(?P<key>\b(?:access_key|secret_key|session_token|password|token)=)"
                    r"(?P<value>[^&\s#'\"]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the user info of every URI in it (``KEY:SECRET@``) and credential query
    parameters replaced by ``***``; everything else is left as it was."""
    if "@" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_data(x: Any) -> Any:
    """``redact`` applied to every string inside nested dicts and lists (for sweep.json)."""
    if isinstance(x, str):
        return redact(x)
    if isinstance(x, dict):
        return {k: redact_data(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [redact_data(v) for v in x]
    return x


class RedactingStream:
    """A text stream that redacts what is written to it and passes everything else on.

    The command line wraps stdout and stderr in it for the length of a command. A line is
    redacted whole when it arrives in pieces, so a secret split across two writes is still
    found; ``flush`` writes out what is pending.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            done, _, self._pending = self._pending.rpartition("\n")
            self._stream.write(redact(done + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(redact(self._pending))
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer …
        return getattr(self._stream, name)
