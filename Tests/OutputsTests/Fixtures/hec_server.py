"""A protocol-faithful Splunk HTTP Event Collector stand-in for cloudtrailbeat's tests.

  hec_server.py PORT

Follows Splunk's REST reference for HEC (services/collector, services/collector/event,
services/collector/ack, services/collector/health) and "Troubleshoot HTTP Event Collector" for its
answers: {"text": ..., "code": N} with the documented HTTP status of each code.

- Authentication: "Authorization: Splunk <token>". Missing: 401 code 2; another scheme: 401 code 3;
  unknown token: 403 code 4; a disabled token: 403 code 1.
- Channels: X-Splunk-Request-Channel, or ?channel=. A token with indexer acknowledgement needs one
  (400 code 10 without); it must be a GUID (400 code 11).
- Events: a body of concatenated JSON objects (whitespace between), gzip'd when Content-Encoding says so.
  Empty: 400 code 5; not JSON: 400 code 6; no "event": code 12; an empty "event": code 13; an index the
  token may not write: 400 code 7 — each with "invalid-event-number", and the whole request is refused.
  Accepted: 200 {"text": "Success", "code": 0}, plus "ackId" (per channel, from 0) with acknowledgement.
- Indexing is not immediate: an accepted batch is indexed "ack_delay" seconds later; only then does
  its ack become true. POST /services/collector/ack {"acks": [ids]} answers {"acks": {"id": bool}}; an
  id answered true is forgotten (a later query answers false), as Splunk does. A channel the server does
  not know (never used, or lost in a restart) answers 400 code 11; a token without acknowledgement
  answers 400 code 14.
- GET /services/collector/health: 200 code 17, or 503 code 18 while busy.

Scripting (POST /_script, JSON, merged):
  {"tokens": {"<token>": {"ack": true, "indexes": ["main"], "disabled": false}}}
  {"ack_delay": seconds}     how long indexing takes
  {"busy": N}                the next N event requests answer 503 code 9 (server is busy)
  {"never_ack": N}           the next N accepted batches are lost before indexing: never indexed, never acked
  {"restart": true}          forget every channel and every batch not indexed yet (a restart of Splunk)
GET /_test/stats: what was indexed ("events", each the envelope as received), and counts.
"""
import gzip, json, re, sys, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOCK = threading.Lock()
SCRIPT = {"tokens": {"secret-token": {"ack": True, "indexes": ["main", "cloudtrail"], "disabled": False}},
          "ack_delay": 0.3, "busy": 0, "never_ack": 0}
CHANNELS = {}  # channel → {"next": int, "pending": {ackId: (due, events or None)}, "indexed": set()}
EVENTS = []
STATS = {"event_requests": 0, "ack_requests": 0, "acks_queried": 0, "acks_true": 0, "refused": [], "encodings": [],
         "lost_batches": 0, "busy_answers": 0, "max_outstanding": 0, "channels": []}
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def settle(now):
    """Indexes the batches whose time has come (under LOCK)."""
    for ch in CHANNELS.values():
        for ack_id, (due, events) in list(ch["pending"].items()):
            if due <= now:
                del ch["pending"][ack_id]
                if events is not None:
                    EVENTS.extend(events)
                    ch["indexed"].add(ack_id)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def authenticate(self):
        """The token's settings, or None after answering the refusal."""
        auth = self.headers.get("Authorization")
        if auth is None:
            self.refuse(401, "Token is required", 2)
            return None
        if not auth.startswith("Splunk "):
            self.refuse(401, "Invalid authorization", 3)
            return None
        token = SCRIPT["tokens"].get(auth[len("Splunk "):])
        if token is None:
            self.refuse(403, "Invalid token", 4)
            return None
        if token.get("disabled"):
            self.refuse(403, "Token disabled", 1)
            return None
        return token

    def refuse(self, status, text, code, **extra):
        STATS["refused"].append({"path": self.path.split("?")[0], "code": code})
        self.reply(status, dict({"text": text, "code": code}, **extra))

    def channel(self, token, query):
        """The request's channel ("" when none is needed), or None after answering the refusal."""
        ch = self.headers.get("X-Splunk-Request-Channel") or (query.get("channel") or [None])[0]
        if ch is None:
            if token.get("ack"):
                self.refuse(400, "Data channel is missing", 10)
                return None
            return ""
        if not GUID.match(ch):
            self.refuse(400, "Invalid data channel", 11)
            return None
        return ch

    def do_GET(self):
        path = self.path.split("?")[0]
        with LOCK:
            settle(time.time())
            if path == "/services/collector/health":
                if SCRIPT["busy"] > 0:
                    return self.reply(503, {"text": "HEC is unhealthy, queues are full", "code": 18})
                return self.reply(200, {"text": "HEC is healthy", "code": 17})
            if path == "/_test/stats":
                outstanding = sum(len(c["pending"]) for c in CHANNELS.values())
                return self.reply(200, dict(STATS, events=EVENTS, outstanding=outstanding, channels=sorted(CHANNELS)))
        self.reply(404, {"text": "The requested URL was not found on this server.", "code": 404})

    def do_POST(self):
        parsed = urllib.parse.urlsplit(self.path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
        raw = self.body()
        with LOCK:
            now = time.time()
            settle(now)
            if path == "/_script":
                SCRIPT.update(json.loads(raw))
                if SCRIPT.pop("restart", False):
                    for ch in CHANNELS.values():
                        STATS["lost_batches"] += sum(1 for _, e in ch["pending"].values() if e is not None)
                    CHANNELS.clear()
                return self.reply(200, {"ok": True})
            if path in ("/services/collector", "/services/collector/event", "/services/collector/event/1.0"):
                return self.events(raw, query, now)
            if path == "/services/collector/ack":
                return self.acks(raw, query)
        self.reply(404, {"text": "The requested URL was not found on this server.", "code": 404})

    def events(self, raw, query, now):
        STATS["event_requests"] += 1
        token = self.authenticate()
        if token is None:
            return
        ch = self.channel(token, query)
        if ch is None:
            return
        if SCRIPT["busy"] > 0:
            SCRIPT["busy"] -= 1
            STATS["busy_answers"] += 1
            return self.refuse(503, "Server is busy", 9)
        encoding = self.headers.get("Content-Encoding", "")
        STATS["encodings"].append(encoding)
        if encoding == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return self.refuse(400, "Invalid data format", 6)
        text = raw.decode("utf-8", "replace")
        if not text.strip():
            return self.refuse(400, "No data", 5)
        decoder = json.JSONDecoder()
        events, i, n = [], 0, 0
        while True:
            while i < len(text) and text[i] in " \t\r\n":
                i += 1
            if i >= len(text):
                break
            try:
                obj, i = decoder.raw_decode(text, i)
            except ValueError:
                return self.refuse(400, "Invalid data format", 6, **{"invalid-event-number": n})
            if not isinstance(obj, dict) or "event" not in obj:
                return self.refuse(400, "Event field is required", 12, **{"invalid-event-number": n})
            if obj["event"] in ("", None):
                return self.refuse(400, "Event field cannot be blank", 13, **{"invalid-event-number": n})
            index = obj.get("index", token["indexes"][0])
            if index not in token["indexes"]:
                return self.refuse(400, "Incorrect index", 7, **{"invalid-event-number": n})
            obj.setdefault("index", index)
            obj["_channel"] = ch
            events.append(obj)
            n += 1
        if not token.get("ack"):
            EVENTS.extend(events)
            return self.reply(200, {"text": "Success", "code": 0})
        c = CHANNELS.setdefault(ch, {"next": 0, "pending": {}, "indexed": set()})
        ack_id = c["next"]
        c["next"] += 1
        lost = SCRIPT["never_ack"] > 0
        if lost:
            SCRIPT["never_ack"] -= 1
            STATS["lost_batches"] += 1
        c["pending"][ack_id] = (now + (86400 * 365 if lost else SCRIPT["ack_delay"]), None if lost else events)
        STATS["max_outstanding"] = max(STATS["max_outstanding"], sum(len(x["pending"]) for x in CHANNELS.values()))
        self.reply(200, {"text": "Success", "code": 0, "ackId": ack_id})

    def acks(self, raw, query):
        STATS["ack_requests"] += 1
        token = self.authenticate()
        if token is None:
            return
        if not token.get("ack"):
            return self.refuse(400, "ACK is disabled", 14)
        ch = self.channel(token, query)
        if ch is None:
            return
        try:
            ids = json.loads(raw or b"{}").get("acks")
            assert isinstance(ids, list) and all(isinstance(x, int) for x in ids)
        except Exception:
            return self.refuse(400, "Invalid data format", 6)
        c = CHANNELS.get(ch)
        if c is None:
            if not ids:
                return self.reply(200, {"acks": {}})
            return self.refuse(400, "Invalid data channel", 11)
        STATS["acks_queried"] += len(ids)
        answer = {}
        for x in ids:
            answer[str(x)] = x in c["indexed"]
            if answer[str(x)]:
                c["indexed"].discard(x)  # answered true once, then forgotten
                STATS["acks_true"] += 1
        self.reply(200, {"acks": answer})


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
