"""Issue 34: the Python `Workspace` on a bucket, against moto's S3 server
started on loopback (from this venv), the objects put there by boto3:
the same answers as on disk."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import n4a
from test_read import merged


@pytest.fixture(scope="module")
def s3_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    p = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("moto_server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        p.terminate()
        p.wait()


def test_workspace_on_a_bucket_answers_as_on_disk(s3_server, gen_ws, monkeypatch):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    s3.create_bucket(Bucket="n4a-py")
    for name in sorted(os.listdir(gen_ws)):
        if not name.startswith("."):
            s3.upload_file(str(gen_ws / name), "n4a-py", f"team/ws/{name}")
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(k, v)
    remote = n4a.Workspace("s3://n4a-py/team/ws")
    local = n4a.Workspace(str(gen_ws))
    url, path = "s3://n4a-py/team/ws", str(gen_ws)

    sa, sl = remote.summary(), local.summary()
    assert sa["workspace"] == url and sa["total_predictions"] == sl["total_predictions"]
    assert merged(json.loads(json.dumps(sa).replace(url, path))) == merged(sl)
    kw = dict(partition="val", metric="mse", sort="val_score:asc", offset=3, limit=20)
    assert remote.query(**kw).to_pylist() == local.query(**kw).to_pylist()
    assert n4a.info(remote.query(**kw))["total"] == n4a.info(local.query(**kw))["total"]


def test_writer_appends_to_a_bucket_dataset(s3_server, monkeypatch, tmp_path):
    import boto3

    from test_write import rows

    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    s3.create_bucket(Bucket="n4a-py-writer")
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(k, v)
    url = "s3://n4a-py-writer/ws"
    with n4a.Writer(url, "corn") as w:
        assert w.write(rows(40)) == 40
    with n4a.Writer(url, "corn", append=True) as w:
        assert w.write(rows(20, start=40)) == 20
    assert w.summary["total_predictions"] == 60
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="n4a-py-writer")["Contents"]}
    assert keys == {"ws/corn.meta.parquet", "ws/corn.arrays.parquet"}, keys
    s = n4a.Workspace(url).summary()
    assert s["total_predictions"] == 60 and s["total_datasets"] == 1
