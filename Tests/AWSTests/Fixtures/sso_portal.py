"""The IAM Identity Center portal (GetRoleCredentials) and SSO OIDC (CreateToken), for cloudtrailbeat's tests.

  sso_portal.py PORT TOKEN ACCOUNT ROLE EXPIRATION_MS REFRESH_TOKEN

GET /federation/credentials?account_id=ACCOUNT&role_name=ROLE with `x-amz-sso_bearer_token: TOKEN`
answers roleCredentials expiring at EXPIRATION_MS (epoch milliseconds), as the portal does; a missing
or wrong token answers 401 UnauthorizedException, another account or role 403 ForbiddenException.
POST /token with {"grantType": "refresh_token", "refreshToken": REFRESH_TOKEN, "clientId",
"clientSecret"} answers TOKEN with a new refresh token ("REFRESH_TOKEN-next"); anything else 400
invalid_grant. GET /stats lists the requests seen (path, token present or not).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, TOKEN, ACCOUNT, ROLE, EXPIRATION, REFRESH = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
seen = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body, error_type=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type + ":http://internal.amazon.com/coral/com.amazonaws.switchboard.portal/")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/stats":
            return self.answer(200, seen)
        query = parse_qs(url.query)
        token = self.headers.get("x-amz-sso_bearer_token")
        seen.append({"path": url.path, "account": query.get("account_id", [None])[0], "role": query.get("role_name", [None])[0]})
        if url.path != "/federation/credentials":
            return self.answer(404, {"message": "not found"})
        if token != TOKEN:
            return self.answer(401, {"message": "Session token not found or invalid"}, "UnauthorizedException")
        if query.get("account_id") != [ACCOUNT] or query.get("role_name") != [ROLE]:
            return self.answer(403, {"message": "No access"}, "ForbiddenException")
        self.answer(200, {"roleCredentials": {
            "accessKeyId": "ASIASSO" + ACCOUNT[-4:], "secretAccessKey": "sso-secret-" + ROLE,
            "sessionToken": "sso-session-token", "expiration": EXPIRATION}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        seen.append({"path": self.path, "grantType": body.get("grantType")})
        if self.path != "/token":
            return self.answer(404, {"message": "not found"})
        if body.get("grantType") != "refresh_token" or body.get("refreshToken") != REFRESH or not body.get("clientId") or not body.get("clientSecret"):
            return self.answer(400, {"error": "invalid_grant", "error_description": "Invalid refresh token provided"})
        self.answer(200, {"accessToken": TOKEN, "expiresIn": 28800, "refreshToken": REFRESH + "-next", "tokenType": "Bearer"})


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
