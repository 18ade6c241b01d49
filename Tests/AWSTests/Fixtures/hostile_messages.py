#!/usr/bin/env python3
"""What someone who can write to the queue would send: hostile_messages.py ENDPOINT DIR LISTENER_PORT REAL_BUCKET

Run after scripts/demo_aws.py setup (DIR holds its env and queue_url). Creates `other-bucket` holding a
well-formed log (not in input.buckets) and DIR/local holding one (never a bucket), uploads five real logs
to REAL_BUCKET with a raw CloudTrail notification each, then sends the hostile messages:

  file        a `file://` bucket naming DIR/local
  userinfo    `REAL_BUCKET@127.0.0.1:LISTENER_PORT#`, which a glob `REAL_BUCKET*` would match
  dotdot      a key in REAL_BUCKET whose `../` segments lead to other-bucket's log
  controls    a key holding a newline, a forged log line and a terminal escape
  many        one message under 256 KiB naming 1 800 CloudTrail-length keys

Writes DIR/hostile.json: the real records (expected.ndjson's shape, byte for byte), the forged eventIDs
that must never ship, and the message ids of the hostile messages by name."""
import gzip, json, os, random, sys

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
import demo_aws  # noqa: E402

endpoint, d, port, bucket = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
env = dict(line.replace("export ", "").strip().split("=", 1) for line in open(os.path.join(d, "env")) if "=" in line)
queue = open(os.path.join(d, "queue_url")).read().strip()
signed = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], config=Config(s3={"addressing_style": "path"}))
s3, sqs = boto3.client("s3", **signed), boto3.client("sqs", **signed)
rng = random.Random(31)
account = demo_aws.ACCOUNT


def log(event_id):
    rec = json.loads(demo_aws.record(rng, 7))
    rec["eventID"] = event_id
    return gzip.compress(json.dumps({"Records": [rec]}).encode())


def send(body):
    return sqs.send_message(QueueUrl=queue, MessageBody=body)["MessageId"]


s3.create_bucket(Bucket=bucket)
s3.create_bucket(Bucket="other-bucket")
other_key = demo_aws.log_key("log", 777001)
s3.put_object(Bucket="other-bucket", Key=other_key, Body=log("forged-in-other-bucket"))
local_key = demo_aws.log_key("log", 777002)
os.makedirs(os.path.join(d, "local", os.path.dirname(local_key)), exist_ok=True)
with open(os.path.join(d, "local", local_key), "wb") as f:
    f.write(log("forged-in-a-local-file"))

expected, ids = [], {}
for i in range(5):
    records = [demo_aws.record(rng, 100 * i + j) for j in range(3)]
    key = demo_aws.log_key("log", 778000 + i)
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(('{"Records":[' + ",".join(records) + "]}").encode()))
    expected += records
    send(json.dumps({"s3Bucket": bucket, "s3ObjectKey": [key]}))

ids["file"] = send(json.dumps({"s3Bucket": "file://" + os.path.join(d, "local"), "s3ObjectKey": [local_key]}))
ids["userinfo"] = send(json.dumps({"s3Bucket": "%s@127.0.0.1:%d#" % (bucket, port), "s3ObjectKey": [demo_aws.log_key("log", 778000)]}))
# The account segment is right (input.accounts passes); three `..` climb out of the bucket's path.
dotdot = "AWSLogs/%s/../../../other-bucket/%s" % (account, other_key)
ids["dotdot"] = send(json.dumps({"s3Bucket": bucket, "s3ObjectKey": [dotdot]}))
ids["controls"] = send(json.dumps({"s3Bucket": bucket, "s3ObjectKey": [
    "AWSLogs/%s/CloudTrail/x.json.gz\n2026-12-08T00:00:00+0000 info cloudtrailbeat : all clear\x1b[2J" % account]}))
many = [demo_aws.log_key("log", 780000 + i) for i in range(1800)]
body = json.dumps({"s3Bucket": bucket, "s3ObjectKey": many})
assert len(body) < 256 * 1024, len(body)
ids["many"] = send(body)

with open(os.path.join(d, "hostile.json"), "w") as f:
    json.dump({"expected": expected, "forged": ["forged-in-other-bucket", "forged-in-a-local-file", "forged-by-the-listener"],
               "ids": ids, "dotdot": dotdot, "other_key": other_key}, f)
print("hostile: %d real records, %d hostile messages" % (len(expected), len(ids)))
