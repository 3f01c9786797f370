"""The object store for large results: a local folder and an S3-compatible service (moto's
real server on loopback), the reference a row keeps, and a run whose large outputs leave
the row store and still aggregate, after a master restart too."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from database.backends.sqlite import SqliteStore
from database.blobs import (
    REF,
    BlobError,
    LocalBlobStore,
    S3BlobStore,
    blob_store_from_env,
    is_offloaded,
    load_result,
    offload_result,
    resolve_records,
)
from database.models import SubtaskStatus

VECTORS = np.arange(200 * 16, dtype=np.float32).reshape(200, 16) / 7


def embed_result() -> dict[str, object]:
    return {"id": "t1:3", "status": "completed", "error": None, "metrics": {"duration_ms": 2},
            "output": {"embeddings": VECTORS.tolist(), "dim": 16, "model": "mini"}}


def test_large_embeddings_go_out_as_npy_and_come_back_exactly(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    result = embed_result()
    kept = offload_result(blobs, "t1:3", result, threshold=1024)
    assert is_offloaded(kept) and kept["metrics"] == result["metrics"]
    ref = kept["output"][REF]
    assert ref["format"] == "npy" and ref["bytes"] == VECTORS.nbytes + 128
    assert len(json.dumps(kept)) < 600, "the row holds a reference, not the vectors"
    assert load_result(blobs, kept) == result
    assert blobs.total_bytes() == ref["bytes"]


def test_other_large_outputs_go_out_as_zstd_json(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    result = {"status": "completed", "output": {"texts": [f"generated text {i} " * 20
                                                          for i in range(300)]}}
    kept = offload_result(blobs, "t1:0", result, threshold=1024)
    assert kept["output"][REF]["format"] == "json.zst"
    assert kept["output"][REF]["bytes"] < len(json.dumps(result["output"])) / 5
    assert load_result(blobs, kept) == result


def test_small_outputs_and_failures_stay_in_the_row(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    small = {"status": "completed", "output": {"echo": 1}}
    assert offload_result(blobs, "t:1", small, threshold=1024) is small
    failed = {"status": "failed", "output": None, "error": "boom"}
    assert offload_result(blobs, "t:2", failed, threshold=0) is failed
    assert blobs.total_bytes() == 0


def test_a_changed_object_is_refused_by_its_hash(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    kept = offload_result(blobs, "t1:3", embed_result(), threshold=1024)
    path = Path(kept["output"][REF]["uri"].removeprefix("file://"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BlobError, match="sha256"):
        load_result(blobs, kept)


def test_a_reference_outside_the_store_is_not_read(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    forged = {"status": "completed", "output": {REF: {
        "uri": secret.as_uri(), "sha256": "x", "format": "json.zst", "bytes": 9}}}
    with pytest.raises(BlobError, match="outside the object store"):
        load_result(blobs, forged)
    with pytest.raises(BlobError, match="outside the object store"):
        blobs.get((tmp_path / "blobs" / ".." / "secret.txt").as_uri())
    ref = blobs.put("../../escape/../x.bin", b"data")
    assert Path(ref.uri.removeprefix("file://")).is_relative_to(tmp_path / "blobs")


def test_configuration_from_the_environment(tmp_path: Path) -> None:
    assert blob_store_from_env({}) is None
    local = blob_store_from_env({"NADG_BLOBS": str(tmp_path / "b")})
    assert isinstance(local, LocalBlobStore) and local.root == (tmp_path / "b").resolve()
    with pytest.raises(BlobError, match="names no bucket"):
        blob_store_from_env({"NADG_BLOBS": "s3://"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on loopback (a real HTTP server, not a patch)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_s3_store_round_trip(s3_endpoint: str, s3_env: None) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="nadg-results")
    blobs = blob_store_from_env({"NADG_BLOBS": "s3://nadg-results/grid-a",
                                 "NADG_BLOBS_ENDPOINT": s3_endpoint})
    assert isinstance(blobs, S3BlobStore)
    kept = offload_result(blobs, "t9:1", embed_result(), threshold=1024)
    uri = kept["output"][REF]["uri"]
    assert uri.startswith("s3://nadg-results/grid-a/t9/1-")
    assert load_result(blobs, kept) == embed_result()
    assert blobs.total_bytes() == kept["output"][REF]["bytes"]
    with pytest.raises(BlobError, match="not in bucket"):
        blobs.get("s3://another-bucket/x")


def test_s3_store_says_what_is_wrong(s3_endpoint: str, s3_env: None) -> None:
    blobs = S3BlobStore("no-such-bucket", endpoint_url=s3_endpoint)
    with pytest.raises(BlobError, match="NADG_BLOBS"):
        blobs.put("x", b"1")


def test_rows_with_references_resolve_after_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_BLOBS", str(tmp_path / "blobs"))
    blobs = blob_store_from_env()
    assert blobs is not None
    store = SqliteStore(tmp_path / "r.db")
    from database.models import NewSubtask

    task = store.create_task("embed", {}, [NewSubtask(idx=0, kind="embed", payload={})])
    sid = f"{task.id}:0"
    assert store.record_result(sid, SubtaskStatus.COMPLETED,
                               result=offload_result(blobs, sid, embed_result(), threshold=1024))
    assert not store.record_result(sid, SubtaskStatus.COMPLETED,
                                   result=offload_result(blobs, sid, {
                                       "status": "completed", "output": {
                                           "embeddings": (VECTORS * 2).tolist()}},
                                       threshold=1024)), "the first completed result wins"
    store.close()
    reopened = SqliteStore(tmp_path / "r.db")  # a master restart
    try:
        subs = reopened.get_task(task.id).subtasks
        assert is_offloaded(subs[0].result)
        assert resolve_records(subs)[0].result == embed_result()
    finally:
        reopened.close()
