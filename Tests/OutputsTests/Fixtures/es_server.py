"""A protocol-faithful Elasticsearch _bulk stand-in for cloudtrailbeat's tests (see shared/reference/protocols.md).

  es_server.py PORT [DELAY]   (DELAY: seconds to wait before answering each _bulk, to play a slow receiver)
  HTTPS when ES_TLS_CERT and ES_TLS_KEY are set; ES_TLS_CLIENT_CA also requires a client certificate.

- POST /_bulk (or /<index>/_bulk): Content-Type must be application/x-ndjson; the body must end with a
  newline; it is parsed as action/source line pairs; sources must be JSON. Only "create" (with _index and
  _id) and "index" actions are accepted. Documents are stored by (_index, _id): a create for an existing
  id answers 409 version_conflict_engine_exception, as Elasticsearch does.
- Scripting (POST /_script, JSON): {"ids": {"<id>": [429, 503]}} answers those statuses for that id's
  next appearances (then normal); {"reject": {"<id>": "reason"}} answers 400 mapper_parsing_exception;
  {"whole": [500]} answers these statuses to the next whole requests; {"max_items": N} answers 413 to
  any request with more than N items.
- {"require_auth": "Basic …"} (via /_script) makes GET / and _bulk answer 401 security_exception, as
  Elasticsearch does, to requests without that Authorization header.
- GET / answers the cluster's name and version. PUT /_index_template/<name> stores a template. GET /_test/stats returns what was seen, including
  max_in_flight: the most _bulk requests it was handling at one time.

Amazon OpenSearch Service, Elastic's data streams and ingest pipelines (all set through /_script):
- {"sigv4": {"region": R, "service": "es"|"aoss", "keys": {AKID: SECRET}, "moto": "http://127.0.0.1:PORT"}}
  makes every request but /_script and /_test/stats need a valid AWS Signature Version 4, checked as
  AWS does, from the bytes received: the canonical request (the path as sent, encoded once more and
  normalised; the query re-encoded and sorted; the signed headers, which must include host and
  x-amz-date; the hash of the body as sent), the scope (date, region, service), the time (within 15
  minutes), and, for temporary credentials, X-Amz-Security-Token (which must be signed). A secret not in
  "keys" is looked up in moto's state (/moto-api/data.json: STS assumed roles and IAM access keys), as
  AWS asks IAM. For "aoss", x-amz-content-sha256 is required and must be the body's hash. Failures
  answer 403 with AWS's shape ({"message": ...} and x-amzn-ErrorType).
- Content-Encoding: gzip bodies are decompressed after the signature check (which covers the gzip bytes).
- {"prefix": "/es"}: only paths under this prefix are served (as behind a proxy that strips it).
- Names that match a template with "data_stream": {} (PUT /_index_template; the built-in logs-*-* and
  metrics-*-* as in Elasticsearch; or scripted {"data_stream_patterns": [...]}) are data streams: only "create" is accepted there (an "index"
  op answers 400 illegal_argument_exception, as Elasticsearch does), every document needs @timestamp,
  and documents land in the backing index .ds-<name>-<yyyy.MM.dd>-000001.
- PUT/GET /_ilm/policy/<name>: index lifecycle policies, checked as Elasticsearch does (known phases and
  actions, rollover only in the hot phase); GET answers 404 resource_not_found_exception for an unknown one.
- {"pipelines": {"<name>": {"set": {"field": value}}}} defines ingest pipelines; ?pipeline=<name> runs
  it on every document (a name not defined fails each item with 400, as Elasticsearch does).
"""
import fnmatch, gzip, hashlib, hmac, json, os, re, sys, threading, time, urllib.parse, urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOCK = threading.RLock()  # reentrant: reply() counts a request out while some callers hold it
DOCS = {}
SCRIPT = {"ids": {}, "reject": {}, "whole": [], "max_items": None, "delay": float(sys.argv[2]) if len(sys.argv) > 2 else 0.0,
          "pipelines": {}, "data_stream_patterns": ["logs-*-*", "metrics-*-*"]}  # Elasticsearch's built-in data stream templates
STATS = {"requests": 0, "items": [], "auth": [], "templates": {}, "bad": [], "max_in_flight": 0,
         "signed": [], "refused": [], "pipeline": [], "encodings": [], "headers": [], "paths": [],
         "ilm_policies": {}, "ilm_puts": 0}


def sigv4_problem(method, raw_path, headers, body):
    """None when the request carries a valid SigV4 signature for SCRIPT["sigv4"]; else why not."""
    cfg = SCRIPT["sigv4"]
    auth = headers.get("Authorization", "")
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})", auth)
    if not m:
        return ("IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters: %r" % auth[:80])
    akid, day, region, service, signed, signature = m.groups()
    if region != cfg["region"] or service != cfg["service"]:
        return ("InvalidSignatureException", "Credential should be scoped to a valid region and service: %s/%s, not %s/%s" % (cfg["region"], cfg["service"], region, service))
    amz_date = headers.get("X-Amz-Date", "")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return ("IncompleteSignatureException", "X-Amz-Date is missing or malformed: %r" % amz_date)
    if abs((datetime.now(timezone.utc) - when).total_seconds()) > 900 or amz_date[:8] != day:
        return ("InvalidSignatureException", "Signature expired or the scope's date is not the request's")
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names or names != sorted(names):
        return ("InvalidSignatureException", "SignedHeaders must be sorted and include host and x-amz-date: %s" % signed)
    secret, token = lookup_secret(akid)
    if secret is None:
        return ("UnrecognizedClientException", "The security token included in the request is invalid (unknown access key %s)" % akid)
    if token is not None:
        if headers.get("X-Amz-Security-Token") != token or "x-amz-security-token" not in names:
            return ("UnrecognizedClientException", "The security token included in the request is invalid (temporary credentials need their signed session token)")
    body_hash = hashlib.sha256(body).hexdigest()
    sent_hash = headers.get("x-amz-content-sha256")
    if cfg["service"] == "aoss" and sent_hash is None:
        return ("InvalidSignatureException", "x-amz-content-sha256 is required by OpenSearch Serverless")
    if sent_hash is not None and sent_hash != body_hash:
        return ("InvalidSignatureException", "x-amz-content-sha256 is not the hash of the body received")
    path, _, query = raw_path.partition("?")
    # The path as sent, normalised, each segment encoded once more (every service but S3).
    segments = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            segments and segments.pop()
            continue
        segments.append(seg)
    norm = "/" + "/".join(segments) + ("/" if path.endswith("/") and segments else "")
    canonical_uri = urllib.parse.quote(norm, safe="/~")
    pairs = []
    for part in query.split("&") if query else []:
        k, _, v = part.partition("=")
        pairs.append((urllib.parse.quote(urllib.parse.unquote(k), safe="-_.~"), urllib.parse.quote(urllib.parse.unquote(v), safe="-_.~")))
    canonical_query = "&".join("%s=%s" % kv for kv in sorted(pairs))
    lines = []
    for name in names:
        values = headers.get_all(name)
        if values is None:
            return ("InvalidSignatureException", "signed header %s is not in the request" % name)
        lines.append("%s:%s\n" % (name, ",".join(" ".join(v.split()) for v in values)))
    canonical = "\n".join([method, canonical_uri, canonical_query, "".join(lines), signed, sent_hash or body_hash])
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature):
        return ("InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
    with LOCK:
        STATS["signed"].append({"akid": akid, "token": token is not None, "service": service, "path": path})
    return None


def lookup_secret(akid):
    """(secret, session token or None) for an access key: the scripted keys, else moto's state."""
    cfg = SCRIPT["sigv4"]
    if akid in cfg.get("keys", {}):
        return cfg["keys"][akid], None
    with LOCK:
        if akid in FOUND:
            return FOUND[akid]
    if not cfg.get("moto"):
        return None, None
    state = json.load(urllib.request.urlopen(cfg["moto"].rstrip("/") + "/moto-api/data.json", timeout=10))
    for role in state.get("sts", {}).get("AssumedRole", []):
        if role.get("access_key_id") == akid:
            return remember(akid, (role.get("secret_access_key"), role.get("session_token")))
    for key in state.get("iam", {}).get("AccessKey", []):
        if key.get("access_key_id") == akid:
            return remember(akid, (key.get("secret_access_key"), None))
    return None, None


def remember(akid, found):
    with LOCK:
        FOUND[akid] = found
    return found


def data_stream(name):
    patterns = list(SCRIPT["data_stream_patterns"])
    for t in STATS["templates"].values():
        if isinstance(t, dict) and "data_stream" in t:
            patterns += t.get("index_patterns", [])
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
IN_FLIGHT = [0]
FOUND = {}  # access key → (secret, session token) found in moto

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, obj):
        self.done()
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def admitted(self, data):
        """Checks the prefix and the signature, and decodes the body; False when it answered already.
        Sets self.route (the path under the prefix, without the query) and self.query."""
        raw = self.path
        with LOCK:
            STATS["paths"].append(raw)
            STATS["headers"].append({k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-") and not k.lower().startswith("x-amz-")})
        prefix = SCRIPT.get("prefix") or ""
        path, _, query = raw.partition("?")
        if prefix:
            if not (path == prefix or path.startswith(prefix + "/")):
                self.reply(404, {"error": "no handler for %s (served under %s)" % (path, prefix)})
                return False
            path = path[len(prefix):] or "/"
        self.route, self.query = path, urllib.parse.parse_qs(query)
        if SCRIPT.get("sigv4"):
            problem = sigv4_problem(self.command, raw, self.headers, data)
            if problem:
                with LOCK:
                    STATS["refused"].append(problem[1])
                self.done()
                payload = json.dumps({"message": problem[1]}).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("x-amzn-ErrorType", problem[0])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return False
        encoding = self.headers.get("Content-Encoding")
        with LOCK:
            STATS["encodings"].append(encoding)
        if encoding == "gzip":
            try:
                self.data = gzip.decompress(data)
            except OSError as e:
                self.reply(400, {"error": {"type": "parse_exception", "reason": "cannot decompress the body: %s" % e}, "status": 400})
                return False
        elif encoding:
            self.reply(400, {"error": {"type": "illegal_argument_exception", "reason": "unsupported Content-Encoding %s" % encoding}, "status": 400})
            return False
        else:
            self.data = data
        return True

    def do_GET(self):
        if self.path == "/_test/stats":
            with LOCK:
                return self.reply(200, dict(STATS, docs={"%s/%s" % k: v for k, v in DOCS.items()}))
        if not self.admitted(b""):
            return
        if self.refused():
            return
        if self.route.startswith("/_ilm/policy/"):
            name = urllib.parse.unquote(self.route[len("/_ilm/policy/"):])
            with LOCK:
                policy = STATS["ilm_policies"].get(name)
            if policy is None:
                return self.reply(404, {"error": {"type": "resource_not_found_exception", "reason": "Lifecycle policy not found: %s" % name}, "status": 404})
            return self.reply(200, {name: {"version": 1, "policy": policy["policy"]}})
        self.reply(200, {"name": "test-node", "cluster_name": "ctb-test", "version": {"number": "8.15.0"}, "tagline": "You Know, for Search"})

    def refused(self):
        want = SCRIPT.get("require_auth")
        if want and self.headers.get("Authorization") != want:
            self.reply(401, {"error": {"type": "security_exception", "reason": "unable to authenticate user for REST request [%s]" % self.path}, "status": 401})
            return True
        return False

    def do_PUT(self):
        if not self.admitted(self.body()):
            return
        data = self.data
        if self.route.startswith("/_ilm/policy/"):
            # Elasticsearch's checks of a lifecycle policy: known phases and actions; rollover only in hot.
            name = urllib.parse.unquote(self.route[len("/_ilm/policy/"):])
            try:
                body = json.loads(data)
                phases = body["policy"]["phases"]
                assert isinstance(phases, dict) and phases
                for phase, spec in phases.items():
                    assert phase in ("hot", "warm", "cold", "frozen", "delete"), "unknown phase %s" % phase
                    for action in spec.get("actions", {}):
                        assert action in ("rollover", "set_priority", "delete", "forcemerge", "shrink", "readonly", "allocate", "migrate", "searchable_snapshot"), "unknown action %s" % action
                        assert action != "rollover" or phase == "hot", "rollover is only allowed in the hot phase"
            except (ValueError, KeyError, TypeError, AssertionError) as e:
                return self.reply(400, {"error": {"type": "x_content_parse_exception", "reason": "invalid lifecycle policy: %s" % e}, "status": 400})
            with LOCK:
                STATS["ilm_policies"][name] = body
                STATS["ilm_puts"] += 1
            return self.reply(200, {"acknowledged": True})
        if self.route.startswith("/_index_template/"):
            with LOCK:
                STATS["templates"][urllib.parse.unquote(self.route.split("/")[-1])] = json.loads(data)
            return self.reply(200, {"acknowledged": True})
        self.reply(404, {"error": "no handler"})

    def do_POST(self):
        data = self.body()
        if self.path == "/_script":
            with LOCK:
                for k, v in json.loads(data).items():
                    if isinstance(SCRIPT.get(k), dict):
                        SCRIPT[k].update(v)
                    else:
                        SCRIPT[k] = v
            return self.reply(200, {"ok": True})
        if not self.admitted(data):
            return
        data = self.data
        if not self.route.endswith("/_bulk"):
            return self.reply(404, {"error": "no handler for %s" % self.route})
        with LOCK:
            IN_FLIGHT[0] += 1
            STATS["max_in_flight"] = max(STATS["max_in_flight"], IN_FLIGHT[0])
        self.in_flight = True
        try:
            self.bulk(data)
        finally:
            self.done()

    def done(self):
        # Counted out before the reply is written: the client cannot send its next request earlier.
        if getattr(self, "in_flight", False):
            self.in_flight = False
            with LOCK:
                IN_FLIGHT[0] -= 1

    def bulk(self, data):
        if self.refused():
            return
        if SCRIPT["delay"]:
            time.sleep(SCRIPT["delay"])  # a slow receiver
        with LOCK:
            STATS["requests"] += 1
            STATS["auth"].append(self.headers.get("Authorization"))
        if self.headers.get("Content-Type", "").split(";")[0] != "application/x-ndjson":
            return self.reply(406, {"error": "Content-Type header [%s] is not supported" % self.headers.get("Content-Type"), "status": 406})
        if not data.endswith(b"\n"):
            with LOCK:
                STATS["bad"].append("no final newline")
            return self.reply(400, {"error": {"type": "illegal_argument_exception", "reason": "The bulk request must be terminated by a newline [\\n]"}, "status": 400})
        lines = data.split(b"\n")[:-1]
        if len(lines) % 2:
            return self.reply(400, {"error": {"type": "illegal_argument_exception", "reason": "Malformed action/metadata line"}, "status": 400})
        n = len(lines) // 2
        with LOCK:
            if SCRIPT["whole"]:
                status = SCRIPT["whole"].pop(0)
                return self.reply(status, {"error": {"type": "scripted", "reason": "scripted whole-request failure"}, "status": status})
            if SCRIPT["max_items"] is not None and n > SCRIPT["max_items"]:
                return self.reply(413, {"error": "request entity too large"})
        pipeline = (self.query.get("pipeline") or [None])[0]
        with LOCK:
            STATS["pipeline"].append(pipeline)
        items, errors = [], False
        for i in range(n):
            action = json.loads(lines[2 * i])
            (op, meta), = action.items()
            if op not in ("create", "index") or "_id" not in meta or "_index" not in meta:
                return self.reply(400, {"error": {"type": "action_request_validation_exception", "reason": "bad action %r" % action}, "status": 400})
            try:
                source = json.loads(lines[2 * i + 1])
            except ValueError as e:
                items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": 400, "error": {"type": "document_parsing_exception", "reason": str(e)}}})
                errors = True
                continue
            if pipeline is not None:
                if pipeline not in SCRIPT["pipelines"]:
                    items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": 400, "error": {"type": "illegal_argument_exception", "reason": "pipeline with id [%s] does not exist" % pipeline}}})
                    errors = True
                    continue
                source.update(SCRIPT["pipelines"][pipeline].get("set", {}))
            if data_stream(meta["_index"]):
                if op != "create":
                    items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": 400, "error": {"type": "illegal_argument_exception", "reason": "only write ops with an op_type of create are allowed in data streams"}}})
                    errors = True
                    continue
                if "@timestamp" not in source:
                    items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": 400, "error": {"type": "document_parsing_exception", "reason": "data stream timestamp field [@timestamp] is missing"}}})
                    errors = True
                    continue
                meta = dict(meta, _index=".ds-%s-%s-000001" % (meta["_index"], time.strftime("%Y.%m.%d", time.gmtime())))
            key = (meta["_index"], meta["_id"])
            with LOCK:
                STATS["items"].append(meta["_id"])
                scripted = SCRIPT["ids"].get(meta["_id"])
                if scripted:
                    status = scripted.pop(0)
                    items.append({op: {"_index": key[0], "_id": key[1], "status": status, "error": {"type": "es_rejected_execution_exception" if status == 429 else "unavailable_shards_exception", "reason": "scripted %d" % status}}})
                    errors = True
                    continue
                if meta["_id"] in SCRIPT["reject"]:
                    items.append({op: {"_index": key[0], "_id": key[1], "status": 400, "error": {"type": "mapper_parsing_exception", "reason": SCRIPT["reject"][meta["_id"]]}}})
                    errors = True
                    continue
                if op == "create" and key in DOCS:
                    items.append({op: {"_index": key[0], "_id": key[1], "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "[%s]: version conflict, document already exists" % key[1]}}})
                    errors = True
                    continue
                DOCS[key] = source
            items.append({op: {"_index": key[0], "_id": key[1], "_version": 1, "result": "created", "status": 201}})
        self.reply(200, {"took": 1, "errors": errors, "items": items})

SERVER = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
if os.environ.get("ES_TLS_CERT"):
    # HTTPS with ES_TLS_CERT and ES_TLS_KEY; with ES_TLS_CLIENT_CA, a client certificate signed by that
    # CA is required (a handshake without one fails, and nothing is answered).
    import ssl
    CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CONTEXT.load_cert_chain(os.environ["ES_TLS_CERT"], os.environ["ES_TLS_KEY"])
    if os.environ.get("ES_TLS_CLIENT_CA"):
        CONTEXT.verify_mode = ssl.CERT_REQUIRED
        CONTEXT.load_verify_locations(os.environ["ES_TLS_CLIENT_CA"])
    SERVER.socket = CONTEXT.wrap_socket(SERVER.socket, server_side=True)
SERVER.serve_forever()
