"""A tiny OIDC issuer for tests: HTTPS on 127.0.0.1 (or the lab's host address, for the lab's
apiservers; a CA made here), serving discovery and a JWKS the test can rotate, and a signer
for RS256/ES256 ID tokens with keys made here."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from kubesim import pki
from kubesim.pki import CertSpec


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int, size: int | None = None) -> str:
    size = size or (value.bit_length() + 7) // 8
    return b64(value.to_bytes(size, "big"))


class Key:
    """A signing key with its kid; `jwk` is its public half as the issuer publishes it."""

    def __init__(self, kid: str, kind: str = "RSA") -> None:
        self.kid = kid
        self.kind = kind
        if kind == "RSA":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())

    @property
    def jwk(self) -> dict:
        pub = self.private.public_key().public_numbers()
        if self.kind == "RSA":
            return {
                "kty": "RSA",
                "kid": self.kid,
                "use": "sig",
                "n": _uint(pub.n),
                "e": _uint(pub.e),
            }
        return {
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "x": _uint(pub.x, 32),
            "y": _uint(pub.y, 32),
        }

    def sign(self, claims: dict, alg: str | None = None, kid: str | None = None) -> str:
        alg = alg or ("RS256" if self.kind == "RSA" else "ES256")
        header = {"alg": alg, "typ": "JWT", "kid": kid if kid is not None else self.kid}
        head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        if self.kind == "RSA":
            sig = self.private.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            der = self.private.sign(head.encode(), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return head + "." + b64(sig)


def unsigned(claims: dict, alg: str = "none", sig: bytes = b"") -> str:
    header = {"alg": alg, "typ": "JWT"}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(sig)}"


class Issuer:
    """Serves /.well-known/openid-configuration and /keys over TLS; counts JWKS fetches."""

    def __init__(self, root: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        ca = pki.make_ca("oidc-test-ca")
        pki.write_pair(root, "oidc-ca", *ca)
        spec = CertSpec("i", "", "", "issuer", server=True, ips=[host])
        pki.write_pair(root, "oidc-issuer", *pki.sign_leaf(spec, *ca))
        self.ca_file = str(root / "oidc-ca.crt")
        self.root = root
        self.keys: list[Key] = []
        self.jwks_fetches = 0
        self.issuer_override: str | None = None
        self.httpd: ThreadingHTTPServer | None = None
        self.port = port
        self.host = host

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> Issuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    doc = {
                        "issuer": issuer.issuer_override or issuer.url,
                        "jwks_uri": issuer.url + "/keys",
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    }
                elif self.path == "/keys":
                    issuer.jwks_fetches += 1
                    doc = {"keys": [k.jwk for k in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self.httpd.server_address[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.root / "oidc-issuer.crt", self.root / "oidc-issuer.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def claims(self, **extra) -> dict:
        now = int(time.time())
        base = {"iss": self.url, "aud": "kubernetes", "sub": "alice", "iat": now, "exp": now + 600}
        base.update(extra)
        return {k: v for k, v in base.items() if v is not None}
