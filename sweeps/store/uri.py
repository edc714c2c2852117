"""Where a results store may be, and how to reach it: local paths, ``file://``, ``s3://``.

``open_fs`` is the one place a store URI becomes a pyarrow filesystem; ``check_uri`` refuses
an unsupported one without connecting (``run`` and ``check`` call it before anything else).
"""

from __future__ import annotations

import os
import urllib.parse

import pyarrow.fs as pafs

from sweeps.store.errors import BadUriError
from sweeps.store.redact import redact

__all__ = ["open_fs", "check_uri", "store_hint", "SCHEMES", "CONNECT_TIMEOUT_S",
           "REQUEST_TIMEOUT_S", "with_endpoint"]

SCHEMES = ("a local path", "file://", "s3://bucket/prefix")
"""Where a store may be. Any other scheme is refused (BadUriError, exit 2): pyarrow knows
gs://, hdfs:// and more, but they are not set up or tested here, and gs:// without
credentials waits for a metadata server that never answers."""
CONNECT_TIMEOUT_S = 3.0
"""Seconds an object-store connection may take; then the attempt fails (3 attempts; the SDK's
own default waited about 100 s for an endpoint that never answers)."""
REQUEST_TIMEOUT_S = 60.0
_S3_QUERY = ("endpoint_override", "scheme", "region")


def check_uri(uri: str) -> None:
    """Refuse (BadUriError) a store URI of an unsupported scheme or form, without connecting."""
    if "://" in uri and uri.split("://", 1)[0].lower() != "file":
        _parse_s3(uri)


def _parse_s3(uri: str) -> tuple[str, str, dict[str, str], str]:
    """bucket, path, query options and user info of an ``s3://`` URI (BadUriError if not)."""
    scheme = uri.split("://", 1)[0].lower()
    if scheme != "s3":
        raise BadUriError(f"{redact(uri)}: {scheme}:// is not a supported results store; use "
                          f"{', '.join(SCHEMES)} (for any S3-compatible store add "
                          f"?endpoint_override=host:port)")
    parts = urllib.parse.urlsplit(uri)
    info, _, bucket = parts.netloc.rpartition("@")
    if not bucket:
        raise BadUriError(f"{redact(uri)}: an S3 store needs a bucket: s3://bucket/prefix")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - set(_S3_QUERY))
    if unknown:
        raise BadUriError(f"{redact(uri)}: unknown S3 option {unknown[0]!r}; options: "
                          f"{', '.join(_S3_QUERY)}")
    return bucket, parts.path, query, info


def with_endpoint(uri: str) -> str:
    """An ``s3://`` URI with the endpoint of AWS_ENDPOINT_URL written into its query, when it
    names none (older pyarrow builds ignore the variable; a cluster's nodes may not have it)."""
    ep = os.environ.get("AWS_ENDPOINT_URL")
    if not uri.startswith("s3://") or "endpoint_override" in uri or not ep:
        return uri
    scheme = "http" if ep.startswith("http://") else "https"
    sep = "&" if "?" in uri else "?"
    return f"{uri}{sep}endpoint_override={ep.split('://', 1)[-1].rstrip('/')}&scheme={scheme}"


def open_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path in it for a local path, ``file://`` or ``s3://``.

    S3: ``s3://[KEY:SECRET@]bucket[/prefix][?endpoint_override=host:port&scheme=http&region=…]``
    (or AWS_ENDPOINT_URL for the endpoint); connections time out after CONNECT_TIMEOUT_S.
    BadUriError for any other scheme, a missing bucket or an unknown query parameter."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    if uri.split("://", 1)[0].lower() == "file":
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    bucket, path, query, info = _parse_s3(with_endpoint(uri))
    key, _, secret = info.partition(":")
    region = query.get("region") or os.environ.get("AWS_REGION") \
        or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and "endpoint_override" not in query:
        region = pafs.resolve_s3_region(bucket)  # AWS itself: ask where the bucket lives
    fs = pafs.S3FileSystem(
        access_key=urllib.parse.unquote(key) or None,
        secret_key=urllib.parse.unquote(secret) or None,
        region=region or "us-east-1", scheme=query.get("scheme") or "https",
        endpoint_override=query.get("endpoint_override") or None,
        connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3))
    return fs, f"{bucket}{path}".rstrip("/")


def store_hint(uri: str, e: BaseException) -> str:
    """What to do about a store error: for an object store that did not answer, which
    endpoint was tried and how to name another."""
    text = str(e)
    if "NETWORK_CONNECTION" not in text and "Could not connect" not in text \
            and "resolve" not in text:
        return ""
    where = "AWS S3 (no endpoint set)"
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query))
    if query.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL"):
        where = query.get("endpoint_override") or os.environ["AWS_ENDPOINT_URL"]
    return (f" [no answer from {where} within the {CONNECT_TIMEOUT_S:g} s connect timeout, "
            f"3 attempts; an S3-compatible store is named by ?endpoint_override=host:port or "
            f"AWS_ENDPOINT_URL]")
