"""The ECS / EKS Pod Identity container credentials endpoint, for cloudtrailbeat's tests.

  container_credentials.py PORT AUTHORIZATION JSONFILE [LOGFILE]

GET /v1/credentials with the header `Authorization: AUTHORIZATION` answers JSONFILE (AccessKeyId,
SecretAccessKey, Token, Expiration), as the ECS agent does; a missing or wrong header answers 401.
With LOGFILE, every request's path is appended to it, one line each.
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, AUTH, FILE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
LOG = sys.argv[4] if len(sys.argv) > 4 else None

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if LOG:
            with open(LOG, "a") as log:
                log.write(self.path + "\n")
        if self.headers.get("Authorization") != AUTH:
            status, body = 401, b'{"message": "unauthorized"}'
        elif self.path != "/v1/credentials":
            status, body = 404, b'{"message": "not found"}'
        else:
            status, body = 200, open(FILE, "rb").read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
