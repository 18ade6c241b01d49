"""A protocol-faithful Elasticsearch _bulk stand-in for cloudtrailbeat's tests (see shared/reference/protocols.md).

  es_server.py PORT [DELAY]   (DELAY: seconds to wait before answering each _bulk, to play a slow receiver)

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
"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOCK = threading.RLock()  # reentrant: reply() counts a request out while some callers hold it
DOCS = {}
SCRIPT = {"ids": {}, "reject": {}, "whole": [], "max_items": None, "delay": float(sys.argv[2]) if len(sys.argv) > 2 else 0.0}
STATS = {"requests": 0, "items": [], "auth": [], "templates": {}, "bad": [], "max_in_flight": 0}
IN_FLIGHT = [0]

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

    def do_GET(self):
        if self.path == "/_test/stats":
            with LOCK:
                return self.reply(200, dict(STATS, docs={"%s/%s" % k: v for k, v in DOCS.items()}))
        if self.refused():
            return
        self.reply(200, {"name": "test-node", "cluster_name": "ctb-test", "version": {"number": "8.15.0"}, "tagline": "You Know, for Search"})

    def refused(self):
        want = SCRIPT.get("require_auth")
        if want and self.headers.get("Authorization") != want:
            self.reply(401, {"error": {"type": "security_exception", "reason": "unable to authenticate user for REST request [%s]" % self.path}, "status": 401})
            return True
        return False

    def do_PUT(self):
        data = self.body()
        if self.path.startswith("/_index_template/"):
            with LOCK:
                STATS["templates"][self.path.split("/")[-1]] = json.loads(data)
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
        if not self.path.endswith("/_bulk"):
            return self.reply(404, {"error": "no handler for %s" % self.path})
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

ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
