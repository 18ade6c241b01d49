#!/usr/bin/env python3
"""Signed CloudTrail digest chains on a local S3 stand-in, for cloudtrailbeat's integrity tests,
benchmark and demo — and a ListPublicKeys stand-in for `aws cloudtrail validate-logs`.

  signed_trails.py setup --endpoint URL --bucket B --dir DIR [--hours H] [--logs N] [--tamper]
  signed_trails.py keys-server --dir DIR --port P
  signed_trails.py notify --endpoint URL --bucket B --queue-url Q --kind logs|digests|backfill-digests

`setup` signs digests as CloudTrail does (User Guide, "Custom implementation of CloudTrail log file
integrity validation"): SHA256withRSA over `digestEndTime\\nbucket/key\\nsha256(digest)\\nprevious
signature`, hex in x-amz-meta-signature, with a key of its own (DER PKCS#1, fingerprint = MD5 of it).
Trails: account 111111111111 (no prefix) in us-east-1 and eu-west-1, and an organisation trail
(prefix org/, o-exampleorg1) for 222222222222 in us-east-1; H hourly digests per chain, each listing N
logs delivered in its hour; one backfill digest (its own chain) listing a late log.

With --tamper it then does what an attacker would: modifies a log, deletes a log, deletes a digest in the
middle of a chain, replaces a digest's signature, and adds a forged log no digest lists.

Writes into DIR: public-keys.json (exactly what `aws cloudtrail list-public-keys` prints), expected.json
(the verdicts `verify --json` must reach, from what was done), chains.json (for validate-logs).
"""
import argparse, base64, datetime, gzip, hashlib, http.server, json, os, random, sys

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

START = datetime.datetime(2026, 11, 30, 0, 0, 0, tzinfo=datetime.timezone.utc)
ISO = "%Y-%m-%dT%H:%M:%SZ"


def s3(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b",
                        config=Config(retries={"max_attempts": 3}))


def log_body(rng, account, region, n):
    recs = [{"eventVersion": "1.09", "eventTime": "2026-11-30T00:00:00Z", "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
             "awsRegion": region, "recipientAccountId": account, "eventID": "%032x" % rng.getrandbits(128)} for _ in range(n)]
    return json.dumps({"Records": recs}, separators=(",", ":")).encode()


def setup(a):
    rng = random.Random(a.seed)
    client = s3(a.endpoint)
    try:
        client.create_bucket(Bucket=a.bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    fingerprint = hashlib.md5(der).hexdigest()
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "public-keys.json"), "w") as f:
        json.dump({"PublicKeyList": [{"Value": base64.b64encode(der).decode(), "ValidityStartTime": "2026-01-01T00:00:00+00:00",
                                      "ValidityEndTime": "2027-06-01T00:00:00+00:00", "Fingerprint": fingerprint}]}, f, indent=4)

    def sign(end, dkey, content, previous_sig):
        s = "%s\n%s/%s\n%s\n%s" % (end, a.bucket, dkey, hashlib.sha256(content).hexdigest(), previous_sig or "null")
        return key.sign(s.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()

    digests, logs, chains = {}, {}, []  # key -> dict(content, sig, listed logs); log key -> sha256
    trails = [("", None, "111111111111", "us-east-1"), ("", None, "111111111111", "eu-west-1"), ("org/", "o-exampleorg1", "222222222222", "us-east-1")]
    for prefix, org, account, region in trails:
        base = "%sAWSLogs/%s%s" % (prefix, org + "/" if org else "", account)
        chain = {"prefix": prefix.rstrip("/"), "org": org, "account": account, "region": region, "digests": []}
        prev = None
        for h in range(a.hours):
            start, end = START + datetime.timedelta(hours=h), START + datetime.timedelta(hours=h + 1)
            day = end.strftime("%Y/%m/%d")
            listed = []
            for i in range(a.logs):
                t = start + datetime.timedelta(minutes=5 + i * 50 // max(a.logs, 1))
                lkey = "%s/CloudTrail/%s/%s/%s_CloudTrail_%s_%s_%08x.json.gz" % (base, region, t.strftime("%Y/%m/%d"), account, region, t.strftime("%Y%m%dT%H%MZ"), rng.getrandbits(32))
                body = log_body(rng, account, region, 1 + rng.randrange(15))
                client.put_object(Bucket=a.bucket, Key=lkey, Body=gzip.compress(body))
                logs[lkey] = hashlib.sha256(body).hexdigest()
                listed.append(lkey)
            dkey = "%s/CloudTrail-Digest/%s/%s/%s_CloudTrail-Digest_%s_main_us-east-1_%s.json.gz" % (base, region, day, account, region, end.strftime("%Y%m%dT%H%M%SZ"))
            doc = {"awsAccountId": account, "digestStartTime": start.strftime(ISO), "digestEndTime": end.strftime(ISO), "digestS3Bucket": a.bucket,
                   "digestS3Object": dkey, "digestPublicKeyFingerprint": fingerprint, "digestSignatureAlgorithm": "SHA256withRSA",
                   "newestEventTime": end.strftime(ISO), "oldestEventTime": start.strftime(ISO),
                   "previousDigestS3Bucket": a.bucket if prev else None, "previousDigestS3Object": prev["key"] if prev else None,
                   "previousDigestHashValue": prev["sha"] if prev else None, "previousDigestHashAlgorithm": "SHA-256" if prev else None,
                   "previousDigestSignature": prev["sig"] if prev else None,
                   "logFiles": [{"s3Bucket": a.bucket, "s3Object": k, "hashValue": logs[k], "hashAlgorithm": "SHA-256",
                                 "newestEventTime": end.strftime(ISO), "oldestEventTime": start.strftime(ISO)} for k in listed]}
            content = json.dumps(doc).encode()
            sig = sign(doc["digestEndTime"], dkey, content, doc["previousDigestSignature"])
            client.put_object(Bucket=a.bucket, Key=dkey, Body=gzip.compress(content), Metadata={"signature": sig, "signature-algorithm": "SHA256withRSA"})
            digests[dkey] = {"listed": listed}
            chain["digests"].append(dkey)
            prev = {"key": dkey, "sha": hashlib.sha256(content).hexdigest(), "sig": sig}
        chains.append(chain)

    # A backfill digest (a chain of its own) listing a log delivered late into the first trail's second hour.
    prefix, org, account, region = trails[0]
    t = START + datetime.timedelta(hours=1, minutes=59)
    lkey = "AWSLogs/%s/CloudTrail/%s/%s/%s_CloudTrail_%s_%s_late0001.json.gz" % (account, region, t.strftime("%Y/%m/%d"), account, region, t.strftime("%Y%m%dT%H%MZ"))
    body = log_body(rng, account, region, 3)
    client.put_object(Bucket=a.bucket, Key=lkey, Body=gzip.compress(body))
    logs[lkey] = hashlib.sha256(body).hexdigest()
    end = START + datetime.timedelta(hours=2)
    dkey = "AWSLogs/%s/CloudTrail-Digest/%s/%s/%s_CloudTrail-Digest_%s_main_us-east-1_%s_backfill.json.gz" % (account, region, end.strftime("%Y/%m/%d"), account, region, end.strftime("%Y%m%dT%H%M%SZ"))
    doc = {"awsAccountId": account, "digestStartTime": (end - datetime.timedelta(hours=1)).strftime(ISO), "digestEndTime": end.strftime(ISO),
           "digestS3Bucket": a.bucket, "digestS3Object": dkey, "digestPublicKeyFingerprint": fingerprint, "digestSignatureAlgorithm": "SHA256withRSA",
           "previousDigestS3Bucket": None, "previousDigestS3Object": None, "previousDigestHashValue": None, "previousDigestHashAlgorithm": None,
           "previousDigestSignature": None, "logFiles": [{"s3Bucket": a.bucket, "s3Object": lkey, "hashValue": logs[lkey], "hashAlgorithm": "SHA-256"}]}
    content = json.dumps(doc).encode()
    client.put_object(Bucket=a.bucket, Key=dkey, Body=gzip.compress(content),
                      Metadata={"signature": sign(doc["digestEndTime"], dkey, content, None), "signature-algorithm": "SHA256withRSA",
                                "backfill-generation-timestamp": (end + datetime.timedelta(hours=3)).strftime(ISO)})
    digests[dkey] = {"listed": [lkey]}

    expected = {"digests": {"invalid": [], "missing": []}, "logs": {"modified": [], "missing": [], "not_covered": []}}
    invalid_digests = set()
    if a.tamper:
        c0, c1, c2 = chains[0]["digests"], chains[1]["digests"], chains[2]["digests"]
        # 1. A log modified (first trail, hour 1): same key, other records.
        victim = digests[c0[1]]["listed"][0]
        client.put_object(Bucket=a.bucket, Key=victim, Body=gzip.compress(log_body(rng, "111111111111", "us-east-1", 2)))
        expected["logs"]["modified"].append(victim)
        # 2. A log deleted (eu-west-1, hour 2).
        gone = digests[c1[2]]["listed"][0]
        client.delete_object(Bucket=a.bucket, Key=gone)
        expected["logs"]["missing"].append(gone)
        # 3. A digest deleted in the middle of the organisation trail's chain: its logs are listed by no valid digest.
        client.delete_object(Bucket=a.bucket, Key=c2[1])
        expected["digests"]["missing"].append(c2[1])
        invalid_digests.add(c2[1])
        expected["logs"]["not_covered"] += digests[c2[1]]["listed"]
        # 4. A digest whose signature was replaced (eu-west-1, hour 1): invalid, and so are its logs' credentials.
        head = client.get_object(Bucket=a.bucket, Key=c1[1])
        data = head["Body"].read()
        meta = dict(head["Metadata"])
        meta["signature"] = "%0512x" % rng.getrandbits(2048)
        client.put_object(Bucket=a.bucket, Key=c1[1], Body=data, Metadata=meta)
        expected["digests"]["invalid"].append(c1[1])
        invalid_digests.add(c1[1])
        expected["logs"]["not_covered"] += digests[c1[1]]["listed"]
        # 5. A forged log in the first trail's first hour, listed by no digest.
        t = START + datetime.timedelta(minutes=33)
        forged = "AWSLogs/111111111111/CloudTrail/us-east-1/%s/111111111111_CloudTrail_us-east-1_%s_f0rged00.json.gz" % (t.strftime("%Y/%m/%d"), t.strftime("%Y%m%dT%H%MZ"))
        client.put_object(Bucket=a.bucket, Key=forged, Body=gzip.compress(log_body(rng, "111111111111", "us-east-1", 1)))
        expected["logs"]["not_covered"].append(forged)
    bad_logs = set(expected["logs"]["modified"] + expected["logs"]["missing"])
    expected["digests"]["valid"] = len([k for k in digests if k not in invalid_digests])
    expected["logs"]["valid"] = len({l for k, d in digests.items() if k not in invalid_digests for l in d["listed"]} - bad_logs)
    for part in expected.values():
        for k, v in part.items():
            if isinstance(v, list):
                v.sort()
    with open(os.path.join(a.dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    with open(os.path.join(a.dir, "chains.json"), "w") as f:
        json.dump(chains, f, indent=1)
    print("signed_trails: %d digests, %d logs in s3://%s%s" % (len(digests), len(logs), a.bucket, " (tampered)" if a.tamper else ""))


def keys_server(a):
    """CloudTrail's ListPublicKeys (JSON 1.1), answering with the keys setup wrote; nothing else."""
    with open(os.path.join(a.dir, "public-keys.json")) as f:
        keys = json.load(f)["PublicKeyList"]
    wire = {"PublicKeyList": [dict(k, ValidityStartTime=datetime.datetime.fromisoformat(k["ValidityStartTime"]).timestamp(),
                                   ValidityEndTime=datetime.datetime.fromisoformat(k["ValidityEndTime"]).timestamp()) for k in keys]}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            target = self.headers.get("X-Amz-Target", "")
            if target.endswith(".ListPublicKeys") and "Signature=" in self.headers.get("Authorization", ""):
                body, status = json.dumps(wire).encode(), 200
            else:
                body, status = json.dumps({"__type": "UnknownOperationException", "message": target}).encode(), 400
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


def notify(a):
    """S3 event notifications (as S3 sends them to SQS) for the bucket's logs, digests or backfill digests,
    in key order (a chain's digests in time order), ten to a message."""
    client = s3(a.endpoint)
    sqs = boto3.client("sqs", endpoint_url=a.endpoint, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=a.bucket):
        for o in page.get("Contents", []):
            k = o["Key"]
            if a.kind == "logs" and "/CloudTrail/" in k:
                keys.append(k)
            elif a.kind == "digests" and "/CloudTrail-Digest/" in k and not k.endswith("_backfill.json.gz"):
                keys.append(k)
            elif a.kind == "backfill-digests" and k.endswith("_backfill.json.gz"):
                keys.append(k)
    for i in range(0, len(keys), 10):
        records = [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-30T05:00:00.000Z",
                    "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": a.bucket, "arn": "arn:aws:s3:::" + a.bucket},
                                                             "object": {"key": k, "size": 1}}} for k in keys[i:i + 10]]
        sqs.send_message(QueueUrl=a.queue_url, MessageBody=json.dumps({"Records": records}))
    print("signed_trails: %d %s notified" % (len(keys), a.kind))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--hours", type=int, default=4)
    s.add_argument("--logs", type=int, default=3)
    s.add_argument("--seed", type=int, default=14)
    s.add_argument("--tamper", action="store_true")
    k = sub.add_parser("keys-server")
    k.add_argument("--dir", required=True)
    k.add_argument("--port", type=int, required=True)
    n = sub.add_parser("notify")
    n.add_argument("--endpoint", required=True)
    n.add_argument("--bucket", required=True)
    n.add_argument("--queue-url", required=True)
    n.add_argument("--kind", choices=["logs", "digests", "backfill-digests"], required=True)
    a = p.parse_args()
    {"setup": setup, "keys-server": keys_server, "notify": notify}[a.cmd](a)


if __name__ == "__main__":
    main()
