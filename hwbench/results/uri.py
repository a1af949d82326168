"""Where results live: a local folder or an object-store URI, as one pyarrow filesystem and a root path.

`--out`, `--store` and the results arguments take a plain path or a URI:

    file:///data/results         the local disk (same as /data/results)
    s3://bucket/prefix           Amazon S3 or any S3-protocol store (pyarrow's S3 client)
    gs://bucket/prefix           Google Cloud Storage (pyarrow's GCS client)
    az://container/prefix        Azure Blob Storage (pyarrow's Azure client, or adlfs through fsspec)

Credentials come from each client's standard provider chain (environment, shared config files,
instance or workload identity), never from the URI: a URI with a user or password in it is refused,
so a secret can never reach a log, a manifest or a record. An S3-protocol endpoint other than AWS
(an emulator, MinIO, a private cloud) is named by the standard AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL variable, so the same code path and URI serve both.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hwbench.errors import UsageError

SCHEMES = ("file", "s3", "gs", "gcs", "az", "abfs", "abfss")
OBJECT_SCHEMES = frozenset(SCHEMES) - {"file"}
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_uri(text: str | os.PathLike[str]) -> bool:
    """True for 'scheme://...' text (a URI); a plain path (even one with a colon) is not."""
    return isinstance(text, str) and _URI.match(text) is not None


@dataclass(frozen=True)
class Location:
    """A results location: `fs` (a pyarrow FileSystem) and `root` (a path on it, no trailing slash).

    `atomic_rename` says whether a rename publishes a file atomically there (the local disk); on
    an object store a single PUT of the final key is the commit, since every object is whole or absent."""

    uri: str
    fs: Any  # pyarrow.fs.FileSystem
    root: str
    atomic_rename: bool

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def display(self, path: str | None = None) -> str:
        """A path on this location as the user would write it (no credentials: URIs never hold any)."""
        p = self.root if path is None else path
        if self.atomic_rename:
            return p
        scheme = urlsplit(self.uri).scheme
        return f"{scheme}://{p}"


def _s3(netloc: str) -> Any:
    from pyarrow import fs

    endpoint = next((os.environ[e] for e in ENDPOINT_ENVS if os.environ.get(e)), None)
    kw: dict[str, Any] = {}
    if endpoint:
        parts = urlsplit(endpoint)
        kw["endpoint_override"] = parts.netloc or parts.path
        kw["scheme"] = parts.scheme or "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kw["region"] = region
    elif endpoint:
        kw["region"] = "us-east-1"  # a custom endpoint has no region to discover
    else:
        try:
            kw["region"] = fs.resolve_s3_region(netloc)  # AWS: the bucket's own region (one HEAD request)
        except (OSError, ValueError):
            pass  # the SDK's default; an access error is reported on first use, with the bucket's name
    return fs.S3FileSystem(**kw)  # keys: the AWS provider chain (env, ~/.aws, instance/IRSA roles)


def _azure(netloc: str) -> Any:
    from pyarrow import fs

    account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME") or os.environ.get("AZURE_STORAGE_ACCOUNT")
    if not account:
        raise UsageError("az:// needs the storage account in AZURE_STORAGE_ACCOUNT_NAME (credentials: the Azure chain)")
    return fs.AzureFileSystem(account_name=account)  # DefaultAzureCredential when no key is given


def open_location(target: str | os.PathLike[str]) -> Location:
    """The filesystem and root for a path or URI; UsageError for an unknown scheme or a URI with credentials."""
    if not is_uri(target):
        path = Path(target).expanduser().absolute()
        from pyarrow import fs

        return Location(str(target), fs.LocalFileSystem(), path.as_posix(), True)
    text = str(target)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"{scheme}:// is not a results store hwbench reads; use a path or one of "
                         + ", ".join(f"{s}://" for s in SCHEMES))
    if parts.username or parts.password:
        raise UsageError(f"{scheme}:// URI with credentials in it refused: give them through the provider chain "
                         "(environment, config files or the machine's identity), never in the URI")
    if scheme == "file":
        return open_location(parts.path or "/")
    if not parts.netloc:
        raise UsageError(f"{text!r} names no bucket")
    root = (parts.netloc + parts.path).rstrip("/")
    from pyarrow import fs

    try:
        if scheme == "s3":
            filesystem = _s3(parts.netloc)
        elif scheme in ("gs", "gcs"):
            filesystem = fs.GcsFileSystem()
        else:
            filesystem = _azure(parts.netloc)
    except (OSError, ValueError) as e:  # a client that cannot start: no region, no library...
        raise UsageError(f"cannot open {scheme}://{root}: {e}") from e
    return Location(f"{scheme}://{root}", filesystem, root, False)
