"""A loopback proxy in front of moto_server that makes chosen S3 GETs fail, for cloudtrailbeat's tests.

  fault_proxy.py PORT UPSTREAM_PORT

Every request is passed to 127.0.0.1:UPSTREAM_PORT unchanged (the Host header included, so SigV4
signatures still verify there), except a GET whose path contains one of the fault substrings: that one
is answered 500 InternalError, as S3 does now and then. The substrings are set with
GET /__faults?fail=a,b (empty: none); GET /__faults/stats returns how many answers were faults, by
substring, as JSON.
"""
import http.client, json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
LOCK = threading.Lock()
FAIL = []
FAULTS = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def control(self):
        url = urlparse(self.path)
        with LOCK:
            if url.path == "/__faults/stats":
                return self.answer(200, json.dumps(FAULTS).encode())
            FAIL[:] = [s for s in parse_qs(url.query).get("fail", [""])[0].split(",") if s]
            return self.answer(200, json.dumps(FAIL).encode())

    def forward(self):
        if self.path.startswith("/__faults"):
            return self.control()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        if self.command == "GET":
            with LOCK:
                hit = next((s for s in FAIL if s in self.path), None)
                if hit:
                    FAULTS[hit] = FAULTS.get(hit, 0) + 1
            if hit:
                xml = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
                       b"<Message>We encountered an internal error. Please try again.</Message>"
                       b"<RequestId>fault-proxy</RequestId></Error>")
                return self.answer(500, xml, "application/xml", [("x-amz-request-id", "fault-proxy")])
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            conn.putheader(k, v)
        conn.endheaders(body if body else None)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
