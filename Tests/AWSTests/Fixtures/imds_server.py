"""An EC2 instance metadata (IMDSv2) stand-in for cloudtrailbeat's spot-interruption tests.

  imds_server.py PORT NOTICE_FILE

- PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds answers a session token (IMDSv2);
  without the TTL header it answers 400, as EC2 does.
- GET /latest/meta-data/spot/instance-action needs that token (401 otherwise). It answers 404 until
  NOTICE_FILE exists, then 200 with the file's content (EC2's JSON: {"action": "terminate", "time": ...}).
- GET /latest/meta-data/placement/region (with the token) answers eu-north-1.
- GET /latest/meta-data/iam/security-credentials/ (with the token) lists the role "shipper" when the
  file NOTICE_FILE.creds exists (JSON: {"AccessKeyId", "SecretAccessKey", "Token"?, "ttl": seconds}),
  and GET …/security-credentials/shipper answers them as EC2 does, expiring ttl seconds from now.
- While the file NOTICE_FILE.down exists, every request is answered 503 (the service unreachable for
  a while, as after a network blip or on a throttled host).
- GET /_test/stats returns how many notice polls, token and credential requests were made.
"""
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, NOTICE = int(sys.argv[1]), sys.argv[2]
TOKEN = "imds-test-token"
LOCK = threading.Lock()
STATS = {"polls": 0, "tokens": 0, "credentials": 0, "refused": 0}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body, content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def down(self):
        if os.path.exists(NOTICE + ".down") and not self.path.startswith("/_test/"):
            with LOCK:
                STATS["refused"] += 1
            self.reply(503, "Service Unavailable")
            return True
        return False

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.down():
            return
        if self.path != "/latest/api/token":
            return self.reply(404, "Not Found")
        if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(400, "Bad Request")
        with LOCK:
            STATS["tokens"] += 1
        self.reply(200, TOKEN)

    def do_GET(self):
        if self.path == "/_test/stats":
            with LOCK:
                return self.reply(200, json.dumps(STATS), "application/json")
        if self.down():
            return
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self.reply(401, "Unauthorized")
        if self.path.startswith("/latest/meta-data/iam/security-credentials/"):
            if not os.path.exists(NOTICE + ".creds"):
                return self.reply(404, "Not Found")
            with open(NOTICE + ".creds") as f:
                creds = json.load(f)
            if self.path.endswith("/security-credentials/"):
                return self.reply(200, "shipper")
            with LOCK:
                STATS["credentials"] += 1
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + creds.get("ttl", 3600)))
            return self.reply(200, json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": creds["AccessKeyId"],
                                               "SecretAccessKey": creds["SecretAccessKey"], "Token": creds.get("Token", ""),
                                               "Expiration": expires}), "application/json")
        if self.path == "/latest/meta-data/placement/region":
            return self.reply(200, "eu-north-1")
        if self.path == "/latest/meta-data/spot/instance-action":
            with LOCK:
                STATS["polls"] += 1
            if os.path.exists(NOTICE):
                with open(NOTICE) as f:
                    return self.reply(200, f.read(), "application/json")
            return self.reply(404, "Not Found")
        self.reply(404, "Not Found")

ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
