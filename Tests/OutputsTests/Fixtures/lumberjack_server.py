"""A Lumberjack v2 (beats protocol) server for cloudtrailbeat's tests (see shared/reference/protocols.md).

  lumberjack_server.py PORT MODE LOGFILE [CERT KEY]   (with CERT and KEY: TLS)
  MODE full:      one ACK per window (the highest seq).
  MODE partial:   ACKs every 3 events, then the last.
  MODE keepalive: three ACK 0 keepalives (0.6 s apart) before each window's ACK.
  MODE drop:      on the first connection, ACKs the first half of the first window, then closes.
  MODE reset:     the first two connections read their first window, then reset (RST, SO_LINGER 0)
                  without an ACK; later ones ACK as in full. Logs {"reset": k} for each.
Decodes W, J and C (zlib) frames; checks seq 1..n per window; logs JSON lines to LOGFILE:
{"event": <decoded JSON>, "seq": n, "conn": k, "compressed": bool} and {"ack": n, "conn": k}.
"""
import json, socket, socketserver, struct, sys, threading, time, zlib

PORT, MODE, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
LOCK = threading.Lock()
CONNS = [0]

def log(obj):
    with LOCK:
        with open(LOG, "a") as f:
            f.write(json.dumps(obj) + "\n")

class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0
    def read(self, n):
        if self.pos + n > len(self.data):
            raise EOFError
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf

def frames(read):
    """Yields (seq, payload, compressed) for every J frame of one window, after the W frame."""
    version, kind = read(2)
    assert version == ord("2") and kind == ord("W"), "expected a window frame, got %r" % bytes([version, kind])
    (count,) = struct.unpack(">I", read(4))
    out = []
    while len(out) < count:
        version, kind = read(2)
        assert version == ord("2"), "bad version %d" % version
        if kind == ord("J"):
            seq, n = struct.unpack(">II", read(8))
            assert n > 0
            out.append((seq, read(n), False))
        elif kind == ord("C"):
            (n,) = struct.unpack(">I", read(4))
            inner = Reader(zlib.decompress(read(n)))
            while inner.pos < len(inner.data):
                v, k = inner.read(2)
                assert v == ord("2") and k == ord("J"), "a C frame must wrap J frames"
                seq, m = struct.unpack(">II", inner.read(8))
                out.append((seq, inner.read(m), True))
        else:
            raise AssertionError("unknown frame type %r" % chr(kind))
    assert [s for s, _, _ in out] == list(range(1, count + 1)), "seq must run 1..n in a window"
    return out

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        conn = None
        try:
            while True:
                events = frames(lambda n: recv_exact(sock, n))
                if conn is None:
                    # Numbered at their first window (a readiness probe that only connects is not counted).
                    with LOCK:
                        CONNS[0] += 1
                        conn = CONNS[0]
                n = len(events)
                for seq, payload, compressed in events:
                    log({"event": json.loads(payload), "seq": seq, "conn": conn, "compressed": compressed})
                def ack(s):
                    sock.sendall(b"2A" + struct.pack(">I", s))
                    if s:
                        log({"ack": s, "conn": conn})
                if MODE == "reset" and conn <= 2:
                    log({"reset": conn})
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    return
                if MODE == "drop" and conn == 1:
                    ack(n // 2)
                    time.sleep(0.1)
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                if MODE == "keepalive":
                    for _ in range(3):
                        ack(0)
                        time.sleep(0.6)
                if MODE == "partial":
                    for s in range(3, n, 3):
                        ack(s)
                ack(n)
        except EOFError:
            return

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

server = Server(("127.0.0.1", PORT), Handler)
if len(sys.argv) > 5:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])

    class TLSHandler(Handler):
        def setup(self):
            try:
                self.request = ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                self.request = None

        def handle(self):
            if self.request is not None:
                Handler.handle(self)

    server.RequestHandlerClass = TLSHandler
server.serve_forever()
