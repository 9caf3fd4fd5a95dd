"""The bucket tests' hands on the S3 server, through boto3 (moto's own
client library, in the venv the tests make): not n4a's client, so what n4a
reads was put there by another tool.

    s3.py ENDPOINT mkbucket BUCKET
    s3.py ENDPOINT upload BUCKET PREFIX DIR     (DIR's files, not hidden ones)
    s3.py ENDPOINT list BUCKET PREFIX           (JSON: key -> [size, etag])
"""
import json
import os
import sys

import boto3

endpoint, cmd, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
)
if cmd == "mkbucket":
    s3.create_bucket(Bucket=bucket)
elif cmd == "upload":
    prefix, src = sys.argv[4], sys.argv[5]
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if not name.startswith(".") and os.path.isfile(path):
            s3.upload_file(path, bucket, f"{prefix}/{name}")
elif cmd == "list":
    prefix = sys.argv[4]
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = [o["Size"], o["ETag"]]
    print(json.dumps(out))
else:
    sys.exit(f"unknown command {cmd}")
