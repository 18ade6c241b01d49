"""An HTTP/1.1 server (keep-alive, a thread per connection) for the HTTP client's own tests: it counts
connections (those that carried a request other than /_test/stats: the tests' own stats client does
not count), requests in flight at once and transfers the client broke off.

  transfer_server.py PORT

  GET /slow?ms=N       answers "ok" after N ms
  GET /together?n=N    answers "ok" once N requests are in flight at once (30 s at most)
  GET /big?mb=N        N MiB of the byte pattern i % 251, written 64 KiB at a time
  GET /_test/stats     {"connections", "requests", "max_in_flight", "aborted"} as JSON
"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

lock = threading.Lock()
arrived = threading.Condition(lock)
stats = {"connections": 0, "requests": 0, "max_in_flight": 0, "aborted": 0}
in_flight = 0
PATTERN = bytes(i % 251 for i in range(251 * 262))  # 65 762 bytes: whole periods of the pattern


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        global in_flight
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/_test/stats":
            with lock:
                body = json.dumps(stats).encode()
            return self.answer(body)
        with lock:
            if not getattr(self, "counted", False):  # one handler per connection: its first request
                self.counted = True
                stats["connections"] += 1
            stats["requests"] += 1
            in_flight += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], in_flight)
        try:
            if url.path == "/slow":
                time.sleep(int(query.get("ms", ["0"])[0]) / 1000)
                self.answer(b"ok")
            elif url.path == "/together":
                # Answers once N requests are in flight at once (or after 30 s): a client that cannot
                # have N in flight is seen, however slow the machine.
                n = int(query.get("n", ["1"])[0])
                with arrived:
                    arrived.notify_all()
                    arrived.wait_for(lambda: stats["max_in_flight"] >= n, timeout=30)
                self.answer(b"ok")
            elif url.path == "/big":
                total = int(query.get("mb", ["1"])[0]) << 20
                self.send_response(200)
                self.send_header("Content-Length", str(total))
                self.end_headers()
                sent = 0
                try:
                    while sent < total:
                        # Each piece starts where the pattern stands at `sent`.
                        offset = sent % 251
                        piece = (PATTERN[offset:] + PATTERN[:offset])[: min(65536, total - sent)]
                        self.wfile.write(piece)
                        sent += len(piece)
                except (BrokenPipeError, ConnectionResetError):
                    with lock:
                        stats["aborted"] += 1
                    self.close_connection = True
            else:
                self.answer(b"not found", 404)
        finally:
            with lock:
                in_flight -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: 64 connections opened at once are not SYN-dropped


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
