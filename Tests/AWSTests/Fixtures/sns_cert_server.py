"""Amazon SNS's signing-certificate host, for cloudtrailbeat's signature tests, and a signer.

  sns_cert_server.py PORT DIR          serve over HTTPS; writes DIR/ca.pem (the test CA) first
  sns_cert_server.py sign DIR VERSION  read an SNS envelope (JSON) on stdin, print it signed

- DIR/ca.pem: a test CA; the HTTPS server's certificate (for IP 127.0.0.1) and the signing certificate
  are issued by it. DIR/signing-key.pem signs, as SNS does: RSA PKCS#1 v1.5 with SHA1 (SignatureVersion 1)
  or SHA256 (2) over the fields Message, MessageId, Subject (when present), Timestamp, TopicArn, Type,
  each as "name\\nvalue\\n" (Amazon SNS Developer Guide, "Verifying the signatures of Amazon SNS messages").
- GET /SimpleNotificationService-test.pem answers the signing certificate; GET /_test/stats how many
  certificate requests were made.
"""
import base64, datetime, json, os, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa, padding
import ipaddress


def make(dir):
    if os.path.exists(os.path.join(dir, "ca.pem")):
        return
    now = datetime.datetime.now(datetime.timezone.utc)
    def cert(subject, key, issuer, issuer_key, ca=False, san=None):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = cert("cloudtrailbeat test CA", ca_key, "cloudtrailbeat test CA", ca_key, ca=True)
    tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tls = cert("127.0.0.1", tls_key, "cloudtrailbeat test CA", ca_key, san="127.0.0.1")
    sign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing = cert("sns.amazonaws.com", sign_key, "cloudtrailbeat test CA", ca_key)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    key = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    for name, data in [("tls.pem", pem(tls)), ("tls-key.pem", key(tls_key)), ("signing.pem", pem(signing)),
                       ("signing-key.pem", key(sign_key)), ("ca.pem", pem(ca))]:  # ca.pem last: it means "ready"
        with open(os.path.join(dir, name), "wb") as f:
            f.write(data)


def sign(dir, envelope, version):
    fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    text = "".join("%s\n%s\n" % (f, envelope[f]) for f in fields if f in envelope)
    with open(os.path.join(dir, "signing-key.pem"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    envelope["SignatureVersion"] = version
    envelope["Signature"] = base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), digest)).decode()
    return envelope


if sys.argv[1] == "sign":
    print(json.dumps(sign(sys.argv[2], json.load(sys.stdin), sys.argv[3])))
    sys.exit(0)

PORT, DIR = int(sys.argv[1]), sys.argv[2]
make(DIR)
STATS = {"certificates": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_test/stats":
            with LOCK:
                return self.reply(200, json.dumps(STATS).encode(), "application/json")
        if self.path == "/SimpleNotificationService-test.pem":
            with LOCK:
                STATS["certificates"] += 1
            with open(os.path.join(DIR, "signing.pem"), "rb") as f:
                return self.reply(200, f.read())
        self.reply(404, b"Not Found")


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(os.path.join(DIR, "tls.pem"), os.path.join(DIR, "tls-key.pem"))
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
