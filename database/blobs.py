"""Large results out of the row store: an object store for big subtask outputs.

An output larger than a threshold (embeddings, generated text sets, training deltas) is
written to an object store as binary, and the row keeps a reference instead::

    {"$blob": {"uri": "file:///…/3f…/7-ab12cd34.npy", "sha256": "…", "format": "npy",
               "bytes": 153728, "fields": {"dim": 384, "model": "…"}}}

* ``format`` ``npy``: an ``embeddings`` (or ``vectors``) matrix as float32 ``.npy``; the
  output's other small fields stay in ``fields``.
* ``format`` ``json.zst``: any other output, as zstd-compressed JSON.

The object is written (and is durable) before the row that refers to it, so a row never
points at nothing; object names hold the content hash, so two masters racing on one
subtask never overwrite each other's object (the row's first completed result wins, and
the loser's object is an orphan). Reading checks the sha256.

Stores: :class:`LocalBlobStore` (a folder; the default, ``NADG_BLOBS`` a path) and
:class:`S3BlobStore` (any S3-compatible service, Supabase Storage's S3 endpoint included:
``NADG_BLOBS=s3://bucket/prefix`` with ``NADG_BLOBS_ENDPOINT`` and the usual
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

#: Outputs whose JSON is larger than this many bytes go to the object store.
DEFAULT_THRESHOLD = 64 * 1024
#: The key under which a row holds a reference.
REF = "$blob"
_VECTOR_KEYS = ("embeddings", "vectors")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class BlobError(Exception):
    """An object could not be written or read, or its content does not match its hash."""


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Where an object is and what it must hash to."""

    uri: str
    sha256: str
    size: int


class BlobStore(Protocol):
    """Put and get immutable objects by name."""

    def put(self, name: str, data: bytes) -> BlobRef:
        """Store ``data`` under ``name`` (durably, before returning)."""
        ...

    def get(self, uri: str) -> bytes:
        """The bytes at ``uri`` (a :attr:`BlobRef.uri` this store returned)."""
        ...

    def total_bytes(self) -> int:
        """Bytes held (for the benchmarks and the operator)."""
        ...


def _safe(name: str) -> str:
    parts = [_SAFE.sub("_", p) for p in name.split("/") if p not in ("", ".", "..")]
    if not parts:
        raise BlobError(f"an empty object name: {name!r}")
    return "/".join(parts)


class LocalBlobStore:
    """Objects as files under one folder (0700), written atomically (temp file, fsync,
    rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, name: str, data: bytes) -> BlobRef:
        """Write ``data`` to ``root/name`` (durable before returning)."""
        path = self.root / _safe(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise BlobError(f"cannot write {path}: {exc}; check the disk under NADG_BLOBS"
                            ) from exc
        return BlobRef(path.as_uri(), hashlib.sha256(data).hexdigest(), len(data))

    def get(self, uri: str) -> bytes:
        """Read an object back; only files under this store's folder."""
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise BlobError(f"not a local object: {uri}")
        path = Path(parsed.path).resolve()
        if not path.is_relative_to(self.root):
            raise BlobError(f"{uri} is outside the object store at {self.root}")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise BlobError(f"cannot read {uri}: {exc}") from exc

    def total_bytes(self) -> int:
        """Bytes of every object under the folder."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


class S3BlobStore:
    """Objects in an S3-compatible bucket (AWS, MinIO, Supabase Storage's S3 endpoint)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 client: Any = None) -> None:
        import boto3  # only when an S3 store is configured

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._s3 = client or boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{_safe(name)}" if self.prefix else _safe(name)

    def put(self, name: str, data: bytes) -> BlobRef:
        """PUT the object (S3 acknowledges only once it is stored)."""
        key = self._key(name)
        digest = hashlib.sha256(data).hexdigest()
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:  # botocore's errors are many; the message says which
            raise BlobError(f"cannot write s3://{self.bucket}/{key}: {exc}; check "
                            "NADG_BLOBS, NADG_BLOBS_ENDPOINT and the AWS_* credentials"
                            ) from exc
        return BlobRef(f"s3://{self.bucket}/{key}", digest, len(data))

    def get(self, uri: str) -> bytes:
        """GET an object of this bucket."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or parsed.netloc != self.bucket:
            raise BlobError(f"{uri} is not in bucket {self.bucket}")
        try:
            body: bytes = self._s3.get_object(Bucket=self.bucket,
                                              Key=parsed.path.lstrip("/"))["Body"].read()
        except Exception as exc:
            raise BlobError(f"cannot read {uri}: {exc}") from exc
        return body

    def total_bytes(self) -> int:
        """Bytes of every object under the prefix."""
        total = 0
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            total += sum(int(o["Size"]) for o in page.get("Contents", []))
        return total


def blob_store_from_env(env: dict[str, str] | None = None) -> BlobStore | None:
    """The store ``NADG_BLOBS`` names (a folder, or ``s3://bucket/prefix``), or None."""
    env = dict(os.environ if env is None else env)
    where = env.get("NADG_BLOBS", "").strip()
    if not where:
        return None
    if where.startswith("s3://"):
        parsed = urlparse(where)
        if not parsed.netloc:
            raise BlobError(f"NADG_BLOBS={where!r} names no bucket; use s3://BUCKET/PREFIX")
        return S3BlobStore(parsed.netloc, parsed.path,
                           endpoint_url=env.get("NADG_BLOBS_ENDPOINT") or None)
    return LocalBlobStore(where)


def threshold_from_env(env: dict[str, str] | None = None) -> int:
    """``NADG_BLOB_THRESHOLD_BYTES`` (default :data:`DEFAULT_THRESHOLD`)."""
    raw = (os.environ if env is None else env).get("NADG_BLOB_THRESHOLD_BYTES", "")
    try:
        return int(raw) if raw.strip() else DEFAULT_THRESHOLD
    except ValueError as exc:
        raise BlobError(f"NADG_BLOB_THRESHOLD_BYTES={raw!r} is not a number of bytes"
                        ) from exc


# -- encoding --------------------------------------------------------------------------


def _encode(output: dict[str, Any]) -> tuple[str, bytes, dict[str, Any]]:
    """(format, bytes, small fields kept in the row) of an output."""
    import numpy as np

    for key in _VECTOR_KEYS:
        vectors = output.get(key)
        if isinstance(vectors, list) and vectors and isinstance(vectors[0], list):
            try:
                matrix = np.asarray(vectors, dtype=np.float32)
            except (TypeError, ValueError):
                break
            if matrix.ndim == 2:
                buf = io.BytesIO()
                np.save(buf, matrix, allow_pickle=False)
                fields = {k: v for k, v in output.items() if k != key}
                return "npy", buf.getvalue(), {"key": key, **fields}
    import zstandard

    text = json.dumps(output, separators=(",", ":"), allow_nan=False).encode()
    return "json.zst", zstandard.ZstdCompressor(level=3).compress(text), {}


def _decode(fmt: str, data: bytes, fields: dict[str, Any]) -> dict[str, Any]:
    if fmt == "npy":
        import numpy as np

        matrix = np.load(io.BytesIO(data), allow_pickle=False)
        rest = dict(fields)
        key = str(rest.pop("key", "embeddings"))
        return {key: matrix.tolist(), **rest}
    if fmt == "json.zst":
        import zstandard

        out: dict[str, Any] = json.loads(zstandard.ZstdDecompressor().decompress(data))
        return out
    raise BlobError(f"unknown object format {fmt!r}")


def offload_result(blobs: BlobStore, subtask_id: str, result: dict[str, Any], *,
                   threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """``result`` with a large ``output`` moved to ``blobs`` (a reference left in its
    place); small outputs, and results that are not completed, come back unchanged."""
    output = result.get("output")
    if not isinstance(output, dict) or REF in output:
        return result
    size = len(json.dumps(output, separators=(",", ":")))
    if size <= threshold:
        return result
    fmt, data, fields = _encode(output)
    digest = hashlib.sha256(data).hexdigest()
    task, _, idx = subtask_id.rpartition(":")
    ref = blobs.put(f"{task or 'task'}/{idx or subtask_id}-{digest[:16]}.{fmt}", data)
    logger.debug("subtask %s: %d bytes of output to %s (%d bytes)", subtask_id, size,
                 ref.uri, ref.size)
    return {**result, "output": {REF: {"uri": ref.uri, "sha256": ref.sha256, "format": fmt,
                                       "bytes": ref.size, "fields": fields}}}


def is_offloaded(result: dict[str, Any] | None) -> bool:
    """True when ``result``'s output is a reference to the object store."""
    output = (result or {}).get("output")
    return isinstance(output, dict) and REF in output


def load_result(blobs: BlobStore, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with a referenced output read back (its sha256 checked)."""
    if not is_offloaded(result):
        return result
    ref = result["output"][REF]
    data = blobs.get(str(ref["uri"]))
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        raise BlobError(f"the object at {ref['uri']} does not match its sha256: it was "
                        "changed or damaged after it was written")
    return {**result, "output": _decode(str(ref["format"]), data, dict(ref.get("fields") or {}))}


def resolve_records(subtasks: list[Any], blobs: BlobStore | None = None) -> list[Any]:
    """``SubtaskRecord`` rows with every referenced output read back (for aggregation);
    rows without a reference are returned as they are. ``blobs`` defaults to the store
    ``NADG_BLOBS`` names."""
    import dataclasses

    if not any(is_offloaded(s.result) for s in subtasks):
        return subtasks
    blobs = blobs or blob_store_from_env()
    if blobs is None:
        raise BlobError("some results are in the object store but NADG_BLOBS is not set; "
                        "set it to the folder (or s3:// bucket) the run wrote them to")
    return [dataclasses.replace(s, result=load_result(blobs, s.result))
            if is_offloaded(s.result) else s for s in subtasks]
