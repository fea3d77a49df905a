"""An S3-compatible blob store (AWS S3, MinIO, Ceph RGW, R2, ...) on aiobotocore.

Objects are content-addressed (``<prefix><tenant>/<sha[:2]>/<sha>``), so a retried delivery
rewrites the same object. ``put`` returns only once S3 answered the PUT with success;
every failure (connection refused, timeout, an S3 error) is a :class:`~.blobs.BlobStoreError`,
which the ways in turn into a retryable answer. An async context manager: the HTTP client
(its connection pool) lives from ``__aenter__`` to ``__aexit__``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from .blobs import BlobStoreError, blob_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["S3BlobStore", "S3Options"]


@dataclass(frozen=True, slots=True)
class S3Options:
    bucket: str
    endpoint_url: str | None = None  # None: AWS itself
    region: str | None = None
    access_key_id: str | None = None  # None: the default credential chain (IRSA, instance profile, env)
    secret_access_key: str | None = None
    prefix: str = ""
    addressing_style: str = "auto"  # "path" for most self-hosted stores
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_attempts: int = 3


class S3BlobStore:
    """Returns references of the form ``s3://<bucket>/<prefix><tenant>/<sha[:2]>/<sha>``."""

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self._client: S3Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    def key_for(self, tenant_id: str, sha256: str) -> str:
        return self.options.prefix + blob_key(tenant_id, sha256)

    def ref_for(self, key: str) -> str:
        return f"s3://{self.options.bucket}/{key}"

    async def __aenter__(self) -> Self:
        o = self.options
        config = AioConfig(
            connect_timeout=o.connect_timeout_seconds,
            read_timeout=o.read_timeout_seconds,
            retries={"max_attempts": o.max_attempts, "mode": "standard"},
            s3={"addressing_style": o.addressing_style},
        )
        kwargs: dict[str, Any] = {"endpoint_url": o.endpoint_url, "region_name": o.region, "config": config}
        if o.access_key_id and o.secret_access_key:
            kwargs["aws_access_key_id"] = o.access_key_id
            kwargs["aws_secret_access_key"] = o.secret_access_key
        async with contextlib.AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(get_session().create_client("s3", **kwargs))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _require_client(self) -> S3Client:
        if self._client is None:
            raise BlobStoreError("the S3 blob store is not open")
        return self._client

    async def put(self, tenant_id: str, sha256: str, content: bytes, content_type: str) -> str:
        key = self.key_for(tenant_id, sha256)
        client = self._require_client()
        try:
            await client.put_object(
                Bucket=self.options.bucket,
                Key=key,
                Body=content,
                ContentType=content_type or "application/octet-stream",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "unknown")
            raise BlobStoreError(f"S3 refused the upload: {code}") from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            raise BlobStoreError(f"S3 unavailable: {type(exc).__name__}") from exc
        return self.ref_for(key)

    async def get(self, ref: str) -> bytes:
        """Read a blob back by its reference (used by tests and tooling)."""
        prefix = f"s3://{self.options.bucket}/"
        if not ref.startswith(prefix):
            raise BlobStoreError("not a reference into this bucket")
        client = self._require_client()
        try:
            response = await client.get_object(Bucket=self.options.bucket, Key=ref[len(prefix) :])
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise BlobStoreError(f"cannot read blob: {type(exc).__name__}") from exc
