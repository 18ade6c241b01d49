"""A TCP listener that records the first bytes each connection sends, then closes it: what a client
sends before any answer (a TLS ClientHello starts 16 03; plain HTTP starts with a method, RESP with *).

  first_bytes_server.py PORT LOGFILE
Appends one line per connection that sent anything: the hex of its first (up to 16) bytes.
"""
import socket, sys, threading

PORT, LOG = int(sys.argv[1]), sys.argv[2]
LOCK = threading.Lock()

def record(conn):
    try:
        conn.settimeout(10)
        data = conn.recv(16)
        if data:
            with LOCK:
                with open(LOG, "a") as f:
                    f.write(data.hex() + "\n")
    except OSError:
        pass
    finally:
        conn.close()

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", PORT))
server.listen(16)
while True:
    conn, _ = server.accept()
    threading.Thread(target=record, args=(conn,), daemon=True).start()
