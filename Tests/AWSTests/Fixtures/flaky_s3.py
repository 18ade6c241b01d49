"""A loopback stand-in for S3 GetObject that misbehaves on purpose, for cloudtrailbeat's tests.

  flaky_s3.py PORT MODE
  MODE cut:      serves one object; the first two answers cut the connection mid-body; Range resumes work.
  MODE throttle: answers 503 SlowDown three times, then the object; every request is counted.
  MODE forbidden: always answers 403 AccessDenied.
  MODE expired:  answers 400 ExpiredToken to requests signed with access key AKIAEXPIRED, serves others.
  MODE sqs-partial: answers SQS JSON batch calls with 200, entry "0" successful, "1" failed, others unnamed.
  MODE sqs-garbage: answers SQS JSON calls with 200 and an HTML page (a proxy's, say).
GET /stats returns the request log as JSON.
"""
import hashlib, json, random, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, MODE = int(sys.argv[1]), sys.argv[2]
random.seed(7)
BODY = bytes(random.getrandbits(8) for _ in range(300_000))
ETAG = hashlib.md5(BODY).hexdigest()
LOG = []
CUTS = [2]
THROTTLES = [3]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/stats":
            data = json.dumps(LOG).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        auth = self.headers.get("Authorization", "")
        key = auth.split("Credential=")[1].split("/")[0] if "Credential=" in auth else None
        LOG.append({"path": self.path, "range": self.headers.get("Range"), "ifMatch": self.headers.get("If-Match"),
                    "signed": auth.startswith("AWS4-HMAC-SHA256"), "key": key})
        if MODE == "forbidden":
            return self.error(403, "AccessDenied", "Access Denied")
        if MODE == "expired" and key == "AKIAEXPIRED":
            return self.error(400, "ExpiredToken", "The provided token has expired.")
        if MODE == "throttle" and THROTTLES[0] > 0:
            THROTTLES[0] -= 1
            return self.error(503, "SlowDown", "Please reduce your request rate.")
        start = 0
        rng = self.headers.get("Range")
        if rng:
            if self.headers.get("If-Match", "").strip('"') != ETAG:
                return self.error(412, "PreconditionFailed", "If-Match mismatch")
            start = int(rng.split("=")[1].split("-")[0])
        body = BODY[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"%s"' % ETAG)
        if rng:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(BODY) - 1, len(BODY)))
        self.end_headers()
        if MODE == "cut" and CUTS[0] > 0:
            CUTS[0] -= 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        LOG.append({"path": self.path, "target": self.headers.get("X-Amz-Target")})
        if MODE == "sqs-partial":
            data = json.dumps({"Successful": [{"Id": "0"}],
                               "Failed": [{"Id": "1", "Code": "InternalError", "Message": "try again", "SenderFault": False}]}).encode()
            ctype = "application/x-amz-json-1.0"
        else:
            data = b"<html><body>502 Bad Gateway</body></html>"
            ctype = "text/html"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "req-%d" % len(LOG))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        data = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code><Message>%s</Message>"
                "<RequestId>req-%d</RequestId></Error>" % (code, message, len(LOG))).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amz-request-id", "req-%d" % len(LOG))
        self.end_headers()
        self.wfile.write(data)

ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
