#!/usr/bin/env python3
"""A listener that must never be contacted: connection_counter.py PORT

Accepts on 127.0.0.1:PORT and writes one line `connection N` to standard error per connection (the
test harness's readiness probe is the first). Whoever connects is answered like S3 answering a GET with
a forged CloudTrail log (eventID "forged-by-the-listener"), so a client that did reach it would also
ship what it served."""
import gzip, socket, sys, threading

port = int(sys.argv[1])
body = gzip.compress(b'{"Records":[{"eventVersion":"1.09","eventID":"forged-by-the-listener","eventTime":"2026-12-01T00:00:00Z",'
                     b'"eventSource":"iam.amazonaws.com","eventName":"CreateUser","recipientAccountId":"123456789012"}]}')
answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(64)
count = 0


def serve(conn):
    try:
        conn.settimeout(5)
        conn.recv(65536)
        conn.sendall(answer)
    except OSError:
        pass
    finally:
        conn.close()


while True:
    conn, peer = server.accept()
    count += 1
    sys.stderr.write("connection %d from %s:%d\n" % (count, peer[0], peer[1]))
    sys.stderr.flush()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
