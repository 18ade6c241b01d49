"""A TCP receiver that accepts connections, reads whatever is sent and never answers: a stuck Logstash
(or any peer) for cloudtrailbeat's shutdown tests.

  silent_server.py PORT
"""
import socket, sys, threading

def drain(conn):
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(16)
while True:
    conn, _ = server.accept()
    threading.Thread(target=drain, args=(conn,), daemon=True).start()
