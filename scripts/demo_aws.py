#!/usr/bin/env python3
"""AWS side of cloudtrailbeat's demo and end-to-end tests, against a local moto_server.

  demo_aws.py setup --endpoint URL --dir DIR [--objects N] [--bad] [--role] [--shared DIR]

Creates (with moto's free unauthenticated calls) an IAM user and access key, then, signed with that key:
a bucket, an SNS topic, an SQS queue subscribed to it, N gzipped CloudTrail log files uploaded under
AWSLogs/..., and CloudTrail-style notifications published to the topic (several keys per message).
With --bad it adds the cases cloudtrailbeat must survive: a digest file, an Insight file, the
CloudTrail validation message, a corrupt gzip, the malformed sample, a log the IAM policy denies
(403 AccessDenied), a key that does not exist (404 NoSuchKey), a redelivered notification, an
unrecognised message, a poison message (already received 10 times), and an S3 event notification
naming an AWS Config snapshot and a digest under a plain key (both skipped).

With --role the user may not read the logs itself (s3:GetObject denied): it must assume the role whose
ARN is written to DIR/role_arn, which may (input.role_arn, as for a trail in another account).

Writes into DIR: env (AWS_* variables), queue_url, expected.ndjson (every valid record, byte for byte),
records_per_key.json (how many of them each uploaded log holds),
expected_bad.json (each key that must be quarantined, with a word its reason must contain), and
cloudtrailbeat.yml.
"""
import argparse, gzip, json, os, random, sys, uuid

import boto3
from botocore.config import Config

ACCOUNT = "123456789012"


def record(rng, t, insight=False):
    svc = rng.choice(["s3", "ec2", "iam", "sts", "kms", "lambda"])
    rec = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole", "principalId": "AROAEXAMPLE:session-%d" % t,
            "arn": "arn:aws:sts::%s:assumed-role/ci/session-%d" % (ACCOUNT, t), "accountId": ACCOUNT,
            "accessKeyId": "ASIA%016X" % rng.getrandbits(64),
            "sessionContext": {"attributes": {"creationDate": "2026-11-28T10:00:00Z", "mfaAuthenticated": "false"}},
        },
        "eventTime": "2026-11-28T%02d:%02d:%02dZ" % (t // 3600 % 24, t // 60 % 60, t % 60),
        "eventSource": "%s.amazonaws.com" % svc,
        "eventName": rng.choice(["GetObject", "DescribeInstances", "AssumeRole", "Decrypt", "ListBuckets"]),
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.%d" % (t % 250),
        "userAgent": rng.choice(["aws-cli/2.15.30", "Boto3/1.34.69", "console.amazonaws.com"]),
        "requestParameters": {"bucketName": "data-%d" % (t % 7), "key": "reports/é & ü \"quoted\" %d.csv" % t} if t % 3 else None,
        "responseElements": None,
        "requestID": str(uuid.UUID(int=rng.getrandbits(128))),
        "eventID": str(uuid.UUID(int=rng.getrandbits(128))),
        "readOnly": bool(t % 2),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
    }
    if insight:
        rec = {"eventVersion": "1.08", "eventTime": rec["eventTime"], "awsRegion": "us-east-1", "eventID": rec["eventID"],
               "eventType": "AwsCloudTrailInsight", "recipientAccountId": ACCOUNT, "sharedEventID": rec["requestID"],
               "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                                  "insightType": "ApiCallRateInsight"}, "eventCategory": "Insight"}
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"))


def log_key(kind, i):
    folder = {"log": "CloudTrail", "insight": "CloudTrail-Insight", "digest": "CloudTrail-Digest"}[kind]
    name = {"log": "%s_CloudTrail_us-east-1_20261128T%04dZ_%016d.json.gz" % (ACCOUNT, i % 2400, i),
            "insight": "%s_CloudTrail-Insight_us-east-1_20261128T%04dZ_%016d.json.gz" % (ACCOUNT, i % 2400, i),
            "digest": "%s_CloudTrail-Digest_us-east-1_trail_us-east-1_20261128T%06dZ.json.gz" % (ACCOUNT, i)}[kind]
    return "AWSLogs/%s/%s/us-east-1/2026/11/28/%s" % (ACCOUNT, folder, name)


def setup(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = random.Random(args.seed)
    bucket = "cloudtrail-demo-bucket"
    denied = log_key("log", 900003)
    free = dict(endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="AKIASETUP", aws_secret_access_key="setup")
    iam = boto3.client("iam", **free)
    iam.create_user(UserName="cloudtrailbeat")
    statements = [{"Effect": "Allow", "Action": ["s3:*", "sqs:*", "sns:*", "sts:*"] + (["iam:*"] if args.role else []), "Resource": "*"}]
    if args.bad:  # moto enforces IAM policies on signed requests: this one object answers 403
        statements.append({"Effect": "Deny", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::%s/%s" % (bucket, denied)})
    if args.role:
        statements.append({"Effect": "Deny", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::%s/*" % bucket})
    iam.put_user_policy(UserName="cloudtrailbeat", PolicyName="ship", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    key = iam.create_access_key(UserName="cloudtrailbeat")["AccessKey"]
    signed = dict(endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"], config=Config(s3={"addressing_style": "path"}))
    s3, sns, sqs = boto3.client("s3", **signed), boto3.client("sns", **signed), boto3.client("sqs", **signed)
    s3.create_bucket(Bucket=bucket)
    if args.role:
        iam_signed = boto3.client("iam", **{k: v for k, v in signed.items() if k != "config"})
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        role = iam_signed.create_role(RoleName="cloudtrail-reader", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam_signed.put_role_policy(RoleName="cloudtrail-reader", PolicyName="read", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "sqs:*"], "Resource": "*"}]}))
        with open(os.path.join(args.dir, "role_arn"), "w") as f:
            f.write(role)
    topic = sns.create_topic(Name="cloudtrail-topic")["TopicArn"]
    queue = sqs.create_queue(QueueName="cloudtrail-queue", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    if args.bad:
        # A poison message: one that some consumer has already received 10 times (input.max_receive_count),
        # made while it is alone in the queue. Its object is never fetched, so its records are not expected.
        poison = log_key("log", 900005)
        s3.put_object(Bucket=bucket, Key=poison, Body=gzip.compress(b'{"Records":[{"eventID":"poison"}]}'))
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"s3Bucket": bucket, "s3ObjectKey": [poison]}))
        for _ in range(10):
            assert len(sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, WaitTimeSeconds=1).get("Messages", [])) == 1

    expected, bad, keys, t, per_key = [], {}, [], 0, {}
    for i in range(args.objects):
        kind = "insight" if args.bad and i == 1 else "log"
        records = [record(rng, t + j, insight=(kind == "insight")) for j in range(rng.randint(0 if i == 2 else 1, 40))]
        t += len(records)
        body = ('{"Records":[' + ",".join(records) + "]}").encode()
        k = log_key(kind, i)
        # Some objects are multi-member gzip, as long-lived writers produce.
        data = gzip.compress(body) if i % 5 else gzip.compress(body[: len(body) // 2]) + gzip.compress(body[len(body) // 2:])
        s3.put_object(Bucket=bucket, Key=k, Body=data, ContentEncoding="gzip")
        expected += records
        keys.append(k)
        per_key[k] = len(records)
    messages = []
    for n in range(0, len(keys), 3):  # several keys per notification
        messages.append(json.dumps({"s3Bucket": bucket, "s3ObjectKey": keys[n:n + 3]}))
    if args.bad:
        digest = log_key("digest", 9)
        s3.put_object(Bucket=bucket, Key=digest, Body=gzip.compress(json.dumps({"awsAccountId": ACCOUNT, "digestStartTime": "2026-11-28T10:00:00Z",
                      "digestEndTime": "2026-11-28T11:00:00Z", "logFiles": []}).encode()))
        corrupt = log_key("log", 900001)
        s3.put_object(Bucket=bucket, Key=corrupt, Body=b"\x1f\x8b\x08\x00" + bytes(rng.getrandbits(8) for _ in range(300)))
        malformed = log_key("log", 900002)
        sample = os.path.join(args.shared or "", "testdata/cloudtrail/stratus-red-team/aws.execution.ec2-user-data.json")
        text = open(sample, "rb").read() if args.shared and os.path.exists(sample) else b'{"Records":[{"a":1} {"b":2}]}'
        s3.put_object(Bucket=bucket, Key=malformed, Body=gzip.compress(text))
        s3.put_object(Bucket=bucket, Key=denied, Body=gzip.compress(b'{"Records":[{"eventID":"denied"}]}'))
        missing = log_key("log", 900004)
        messages.append(json.dumps({"s3Bucket": bucket, "s3ObjectKey": [digest, corrupt, malformed]}))
        messages.append(json.dumps({"s3Bucket": bucket, "s3ObjectKey": [denied, missing]}))
        # An S3 event notification (S3 → SQS, no SNS) from a bucket CloudTrail shares with AWS Config, and
        # a digest copied under a key that does not say so: both are skipped, not emitted.
        config_key = "AWSLogs/%s/Config/us-east-1/2026/11/28/ConfigSnapshot/%s_Config_us-east-1_ConfigSnapshot_20261128T000000Z.json.gz" % (ACCOUNT, ACCOUNT)
        s3.put_object(Bucket=bucket, Key=config_key, Body=gzip.compress(b'{"fileVersion":"1.0","configurationItems":[]}'))
        digest_copy = "exports/integrity/copy-0001.json.gz"
        s3.put_object(Bucket=bucket, Key=digest_copy, Body=gzip.compress(json.dumps({"awsAccountId": ACCOUNT, "digestStartTime": "2026-11-28T10:00:00Z",
                      "digestEndTime": "2026-11-28T11:00:00Z", "logFiles": []}).encode()))
        s3_event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
                                 "s3": {"bucket": {"name": bucket}, "object": {"key": k, "size": 100}}} for k in (config_key, digest_copy)]}
        messages.append("CloudTrail validation message.")
        messages.append(messages[0])  # a redelivered notification
        bad = {corrupt: "byte", malformed: "byte", denied: "allows s3:GetObject", missing: "NoSuchKey"}
    if args.role and keys:  # the user alone is refused
        try:
            s3.get_object(Bucket=bucket, Key=keys[0])
            sys.exit("setup --role: the user can read the logs itself; the role would prove nothing")
        except s3.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", e
    for m in messages:
        sns.publish(TopicArn=topic, Message=m)
    if args.bad:
        sqs.send_message(QueueUrl=queue, MessageBody="this is not a notification")
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(s3_event))

    with open(os.path.join(args.dir, "env"), "w") as f:
        f.write("export AWS_ACCESS_KEY_ID=%s\nexport AWS_SECRET_ACCESS_KEY=%s\nexport AWS_REGION=us-east-1\n" % (key["AccessKeyId"], key["SecretAccessKey"]))
    with open(os.path.join(args.dir, "queue_url"), "w") as f:
        f.write(queue)
    with open(os.path.join(args.dir, "expected.ndjson"), "w") as f:
        f.write("".join(r + "\n" for r in expected))
    with open(os.path.join(args.dir, "expected_bad.json"), "w") as f:
        json.dump(bad, f)
    with open(os.path.join(args.dir, "records_per_key.json"), "w") as f:
        json.dump(per_key, f)
    with open(os.path.join(args.dir, "cloudtrailbeat.yml"), "w") as f:
        f.write("""# Written by scripts/demo_aws.py for a local moto_server.
input:
  sqs_url: %s
  aws_region: us-east-1
  endpoint: %s
  path_style: true
  wait_time: 1
  visibility_timeout: 30
  workers: 2
journal:
  path: %s/journal
output:
  file:
    path: %s/out
    filename: events.ndjson
%s
logging:
  level: info
""" % (queue, args.endpoint, args.dir, args.dir, "  console:\n    pretty: false\n" if args.console else ""))
    print("setup: %d objects, %d records, %d notifications on %s" % (len(keys), len(expected), len(messages), queue))


def backfill_setup(args):
    """A bucket of existing logs for backfill tests: accounts × regions × days, also written to DIR/local."""
    rng = random.Random(args.seed)
    kw = dict(endpoint_url=args.endpoint, region_name="us-east-1", aws_access_key_id="AKIAFREE", aws_secret_access_key="free",
              config=Config(s3={"addressing_style": "path"}, max_pool_connections=20))
    s3 = boto3.client("s3", **kw)
    bucket = "org-trail-bucket"
    s3.create_bucket(Bucket=bucket)
    accounts = ["111111111111", "o-abc123def4/222222222222"]
    regions, days = ["us-east-1", "eu-west-1"], ["26", "27", "28"]
    per = max(1, args.objects // (len(accounts) * len(regions) * len(days)))
    by_day, t, uploads = {}, 0, []
    for acct in accounts:
        for region in regions:
            for day in days:
                for i in range(per):
                    records = [record(rng, t + j) for j in range(rng.randint(1, 4))]
                    t += len(records)
                    by_day.setdefault(day, []).extend(records)
                    account = acct.split("/")[-1]
                    key = "%sAWSLogs/%s/CloudTrail/%s/2026/11/%s/%s_CloudTrail_%s_202611%sT%04dZ_%08d.json.gz" % (
                        args.prefix, acct, region, day, account, region, day, i % 2400, i)
                    body = gzip.compress(('{"Records":[' + ",".join(records) + "]}").encode())
                    path = os.path.join(args.dir, "local", key)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(body)
                    uploads.append((key, body))
        digest = "%sAWSLogs/%s/CloudTrail-Digest/us-east-1/2026/11/28/digest.json.gz" % (args.prefix, acct)
        uploads.append((digest, gzip.compress(b'{"awsAccountId":"1","logFiles":[]}')))
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kb: s3.put_object(Bucket=bucket, Key=kb[0], Body=kb[1]), uploads))
    for day, records in by_day.items():
        with open(os.path.join(args.dir, "expected-%s.ndjson" % day), "w") as f:
            f.write("".join(r + "\n" for r in records))
    print("backfill-setup: %d objects, %d records in s3://%s" % (len(uploads), sum(len(r) for r in by_day.values()), bucket))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--objects", type=int, default=20)
    s.add_argument("--seed", type=int, default=2026)
    s.add_argument("--bad", action="store_true")
    s.add_argument("--role", action="store_true")
    s.add_argument("--console", action="store_true")
    s.add_argument("--shared")
    b = sub.add_parser("backfill-setup")
    b.add_argument("--endpoint", required=True)
    b.add_argument("--dir", required=True)
    b.add_argument("--objects", type=int, default=2500)
    b.add_argument("--prefix", default="")
    b.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    (setup if args.cmd == "setup" else backfill_setup)(args)


if __name__ == "__main__":
    main()
