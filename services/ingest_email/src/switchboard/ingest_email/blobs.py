"""Where attachment content goes: a small blob-store interface and a local-directory store.

(The S3-compatible store is in :mod:`.s3_blobs`.)

Content is addressed by tenant and SHA-256, so storing the same attachment twice (a
retried delivery, the same logo in every signature) writes it once, and a stored name
never comes from anything the sender chose (no path traversal through filenames).
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["BlobStore", "BlobStoreError", "LocalDirectoryBlobStore", "blob_key"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class BlobStoreError(RuntimeError):
    """The store could not keep the content: the message is refused with a retryable answer
    (SMTP 451, HTTP 503), never published pointing at a blob that is not there."""


def blob_key(tenant_id: str, sha256: str) -> str:
    """``<tenant>/<sha[:2]>/<sha>``, checked: nothing the sender chose ends up in a path or key."""
    if not _TENANT_RE.match(tenant_id):
        raise BlobStoreError("invalid tenant id for a blob key")
    if not _SHA256_RE.match(sha256):
        raise BlobStoreError("invalid sha256 for a blob key")
    return f"{tenant_id}/{sha256[:2]}/{sha256}"


@runtime_checkable
class BlobStore(Protocol):
    """Keeps attachment (and oversize body) content; returns a reference to put on the event.

    ``put`` returns only once the content is durably stored, raises :class:`BlobStoreError`
    otherwise. It must be idempotent for the same ``(tenant_id, sha256)``.
    """

    async def put(self, tenant_id: str, sha256: str, content: bytes, content_type: str) -> str: ...


class LocalDirectoryBlobStore:
    """Stores each blob as ``<root>/<tenant>/<sha[:2]>/<sha>``, written atomically.

    Returns references of the form ``local:<tenant>/<sha[:2]>/<sha>``.
    """

    scheme = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_for(self, tenant_id: str, sha256: str) -> Path:
        return self.root / blob_key(tenant_id, sha256)

    async def put(self, tenant_id: str, sha256: str, content: bytes, content_type: str) -> str:
        return await asyncio.to_thread(self.put_sync, tenant_id, sha256, content, content_type)

    def put_sync(self, tenant_id: str, sha256: str, content: bytes, content_type: str) -> str:
        """The blocking write (for tools and tests that have no event loop)."""
        path = self.path_for(tenant_id, sha256)
        ref = f"{self.scheme}:{blob_key(tenant_id, sha256)}"
        if path.exists():
            return ref
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise BlobStoreError(f"cannot store blob: {exc.strerror or exc}") from exc
        return ref

    def get(self, ref: str) -> bytes:
        """Read a blob back by its reference (used by tests and tooling)."""
        prefix = f"{self.scheme}:"
        if not ref.startswith(prefix):
            raise BlobStoreError("not a local blob reference")
        tenant, _, sha = ref[len(prefix) :].partition("/")
        return self.path_for(tenant, sha.rpartition("/")[2]).read_bytes()
