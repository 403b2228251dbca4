"""OpenID Connect ID-token authenticator (kube-apiserver --oidc-* flags).

Emulates staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go (1.30)
over github.com/coreos/go-oidc v2 (verify.go, jwks.go):
- a token whose unverified payload has another `iss` is not ours (hasCorrectIssuer): the
  union of token authenticators goes on, and ends in 401;
- discovery (`{issuer}/.well-known/openid-configuration`, whose `issuer` must equal the
  flag) runs in the background and is retried every 10 s, so the apiserver starts while the
  issuer is down; meanwhile tokens fail with "oidc: authenticator not initialized";
- keys come from `jwks_uri` and are cached; a token no cached key verifies makes one refetch
  (remoteKeySet.verify: the spec's key-rotation strategy), here rate-limited;
- go-oidc's checks in its order: iss, aud contains --oidc-client-id, exp (no leeway, a
  missing exp is expired), nbf (1 minute leeway), iat unchecked; then the header's alg must
  be in --oidc-signing-algs (default RS256) and a key of that type must verify it;
- claims (oidc.go): --oidc-required-claim, username from --oidc-username-claim (default
  sub, a string) with --oidc-username-prefix (pkg/kubeapiserver/options/authentication.go:
  unset -> issuer URL + "#" unless the claim is email, "-" -> none), email_verified must be
  true when present for the email claim, groups from --oidc-groups-claim (a string or a list
  of strings) with --oidc-groups-prefix.
The HTTP client trusts --oidc-ca-file, else the system roots. Its timeout is shorter than
upstream's 30 s (http.Client in oidc.go) so a request thread never waits long on the issuer.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .. import klog

# --oidc-signing-algs accepts the asymmetric JOSE algorithms only (options validation:
# allowedSigningAlgs); "none" and HS* can never be configured.
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
CURVES = {"ES256": ("P-256", 32), "ES384": ("P-384", 48), "ES512": ("P-521", 66)}
SUPPORTED_ALGS = {f"{k}{n}" for k in ("RS", "PS", "ES") for n in HASHES}
EC_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
MAX_BODY = 1 << 20


class TokenError(Exception):
    """A token this authenticator handles but rejects (logged; the client sees 401)."""


def b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _int(data: str) -> int:
    return int.from_bytes(b64url(data), "big")


def parse_jwk(jwk: dict) -> tuple[str, object] | None:
    """(kty, public key) of one JWKS entry, None when it is not a usable public key."""
    try:
        if jwk.get("kty") == "RSA":
            return "RSA", rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        if jwk.get("kty") == "EC" and jwk.get("crv") in EC_CURVES:
            curve = EC_CURVES[jwk["crv"]]()
            key = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve)
            return "EC:" + jwk["crv"], key.public_key()
    except (KeyError, ValueError, TypeError):
        pass
    return None


def verify_signature(alg: str, kty: str, key, signing_input: bytes, sig: bytes) -> bool:
    """go-jose's verifiers: the key type must suit the algorithm (RS*/PS* RSA, ES* the
    matching curve with a fixed-size r||s signature)."""
    digest = HASHES[alg[2:]]()
    try:
        if alg.startswith("RS") and kty == "RSA":
            key.verify(sig, signing_input, padding.PKCS1v15(), digest)
            return True
        if alg.startswith("PS") and kty == "RSA":
            pss = padding.PSS(mgf=padding.MGF1(HASHES[alg[2:]]()), salt_length=padding.PSS.AUTO)
            key.verify(sig, signing_input, pss, digest)
            return True
        if alg.startswith("ES") and kty == "EC:" + CURVES[alg][0]:
            size = CURVES[alg][1]
            if len(sig) != 2 * size:
                return False
            r = int.from_bytes(sig[:size], "big")
            s = int.from_bytes(sig[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def prefix_from_flags(issuer: str, claim: str, prefix: str | None) -> str:
    """The username prefix as options/authentication.go derives it from the flags."""
    if not prefix and claim != "email":
        prefix = issuer + "#"  # legacy behaviour: every claim but email gets the issuer
    if prefix == "-":
        prefix = ""
    return prefix or ""


class OIDCAuthenticator:
    """Verifies ID tokens for one issuer. `authenticate` returns (name, groups) or None
    when the token is not this issuer's JWT; it raises TokenError for a bad token."""

    retry_seconds = 10.0  # wait.PollUntilContextCancel(ctx, 10*time.Second, ...) in oidc.go
    timeout = 5.0  # per HTTP request
    min_refresh = 2.0  # at most one JWKS refetch this often (go-oidc has no limit)
    nbf_leeway = 60.0  # go-oidc verify.go

    def __init__(self, flags: dict[str, str], now: Callable[[], float] = time.time) -> None:
        self.issuer = flags["oidc-issuer-url"]
        self.client_id = flags.get("oidc-client-id", "")
        self.username_claim = flags.get("oidc-username-claim") or "sub"
        self.username_prefix = prefix_from_flags(
            self.issuer, self.username_claim, flags.get("oidc-username-prefix")
        )
        self.groups_claim = flags.get("oidc-groups-claim", "")
        self.groups_prefix = flags.get("oidc-groups-prefix", "")
        self.algs = [a for a in flags.get("oidc-signing-algs", "RS256").split(",") if a]
        for alg in self.algs:
            if alg not in SUPPORTED_ALGS:
                raise ValueError(f"oidc: unsupported signing alg: {alg}")
        # NewMapStringStringNoSplit: key=value (kubesim's flag parser keeps the last one)
        self.required: dict[str, str] = {}
        required = flags.get("oidc-required-claim", "")
        if required:
            key, _, value = required.partition("=")
            self.required[key] = value
        self.ssl = ssl.create_default_context(cafile=flags.get("oidc-ca-file") or None)
        self.now = now
        self.jwks_uri: str | None = None
        self.keys: list[tuple[str | None, str, object]] = []  # (kid, kty, key)
        self.fetched_at = float("-inf")
        self.fetch_lock = threading.Lock()
        self.stop = threading.Event()

    # -- issuer ------------------------------------------------------------------------------
    def _get(self, url: str) -> dict:
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout, context=self.ssl) as resp:
            body = resp.read(MAX_BODY)
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError(f"{url}: not a JSON object")
        return doc

    def discover(self) -> None:
        """go-oidc NewProvider: the discovery document, whose issuer must be the flag."""
        doc = self._get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        if doc.get("issuer") != self.issuer:
            raise ValueError(
                "oidc: issuer did not match the issuer returned by provider, "
                f'expected "{self.issuer}" got "{doc.get("issuer")}"'
            )
        if not isinstance(doc.get("jwks_uri"), str):
            raise ValueError("oidc: discovery document has no jwks_uri")
        self.jwks_uri = doc["jwks_uri"]

    def refresh_keys(self) -> None:
        """Fetch the JWKS (one caller at a time, at most every `min_refresh` seconds)."""
        with self.fetch_lock:
            if time.monotonic() - self.fetched_at < self.min_refresh or not self.jwks_uri:
                return
            self.fetched_at = time.monotonic()
            doc = self._get(self.jwks_uri)
            keys = []
            for jwk in doc.get("keys") or []:
                parsed = parse_jwk(jwk) if isinstance(jwk, dict) else None
                if parsed is not None:
                    keys.append((jwk.get("kid"), *parsed))
            self.keys = keys

    def start(self) -> threading.Thread:
        """Initialise in the background, retrying until discovery succeeds (oidc.go New)."""
        thread = threading.Thread(target=self._init_loop, name="oidc-init", daemon=True)
        thread.start()
        return thread

    def _init_loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.discover()
            except Exception as err:  # noqa: BLE001 - any failure is retried, as upstream
                klog.error(f"oidc authenticator: initializing plugin: {err}", "oidc.go:345")
                self.stop.wait(self.retry_seconds)
                continue
            try:
                self.refresh_keys()  # prefetch so the first token needs no fetch
            except Exception as err:  # noqa: BLE001 - fetched again on the first token
                klog.error(f"oidc authenticator: fetching keys: {err}", "jwks.go:200")
            return

    # -- tokens -------------------------------------------------------------------------------
    def has_correct_issuer(self, token: str) -> bool:
        """oidc.go hasCorrectIssuer: three parts and an unverified payload with our iss."""
        parts = token.split(".")
        if len(parts) != 3:
            return False
        try:
            claims = json.loads(b64url(parts[1]))
        except ValueError:
            return False
        return isinstance(claims, dict) and claims.get("iss") == self.issuer

    def authenticate(self, token: str) -> tuple[str, list[str]] | None:
        if not self.has_correct_issuer(token):
            return None
        if self.jwks_uri is None:
            raise TokenError("oidc: authenticator not initialized")
        claims = self.verify(token)
        return self.map_claims(claims)

    def verify(self, token: str) -> dict:
        """go-oidc IDTokenVerifier.Verify: cheap claim checks first, then the signature."""
        head_b64, payload_b64, sig_b64 = token.split(".")
        try:
            header = json.loads(b64url(head_b64))
            claims = json.loads(b64url(payload_b64))
            sig = b64url(sig_b64)
        except ValueError as err:
            raise TokenError(f"oidc: malformed jwt: {err}") from err
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("oidc: malformed jwt: not a JSON object")
        self._check_claims(claims)
        alg = header.get("alg")
        if alg not in self.algs:
            raise TokenError(
                "oidc: id token signed with unsupported algorithm, "
                f'expected {self.algs} got "{alg}"'
            )
        signing_input = f"{head_b64}.{payload_b64}".encode()
        kid = header.get("kid")
        if self._verify_with(self.keys, alg, kid, signing_input, sig):
            return claims
        try:
            self.refresh_keys()
        except Exception as err:  # noqa: BLE001 - network or document trouble
            raise TokenError(f"failed to verify signature: fetching keys {err}") from err
        if self._verify_with(self.keys, alg, kid, signing_input, sig):
            return claims
        raise TokenError("failed to verify signature: failed to verify id token signature")

    @staticmethod
    def _verify_with(keys, alg: str, kid, signing_input: bytes, sig: bytes) -> bool:
        return any(
            verify_signature(alg, kty, key, signing_input, sig)
            for key_id, kty, key in keys
            if not kid or key_id == kid
        )

    def _check_claims(self, claims: dict) -> None:
        if claims.get("iss") != self.issuer:
            raise TokenError(
                "oidc: id token issued by a different provider, "
                f'expected "{self.issuer}" got "{claims.get("iss")}"'
            )
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.client_id not in audiences:
            raise TokenError(f'oidc: expected audience "{self.client_id}" got {audiences}')
        now = self.now()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp < now:
            raise TokenError(f"oidc: token is expired (Token Expiry: {exp})")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and now + self.nbf_leeway < nbf:
            raise TokenError(f"oidc: current time {now} before the nbf (not before) time: {nbf}")

    def map_claims(self, claims: dict) -> tuple[str, list[str]]:
        """oidc.go AuthenticateToken after verification: required claims, username, groups."""
        for key, want in self.required.items():
            if key not in claims:
                raise TokenError(f"oidc: required claim {key} not present in ID token")
            got = claims[key]
            if not isinstance(got, str):
                raise TokenError(f"oidc: parse claim {key}: not a string")
            if got != want:
                raise TokenError(
                    f"oidc: required claim {key} value does not match. Got = {got}, want = {want}"
                )
        claim = self.username_claim
        if claim not in claims:
            raise TokenError(f'oidc: parse username claims "{claim}": claim not present')
        username = claims[claim]
        if not isinstance(username, str):
            raise TokenError(f'oidc: parse username claims "{claim}": not a string')
        if claim == "email" and "email_verified" in claims:
            verified = claims["email_verified"]
            if not isinstance(verified, bool):
                raise TokenError("oidc: parse 'email_verified' claim: not a boolean")
            if not verified:
                raise TokenError("oidc: email not verified")
        groups: list[str] = []
        if self.groups_claim and self.groups_claim in claims:
            value = claims[self.groups_claim]
            # "Allow the group claim to be a single string instead of an array" (stringOrArray)
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
                raise TokenError(f'oidc: parse groups claim "{self.groups_claim}": bad type')
            groups = [self.groups_prefix + g for g in value]
        return self.username_prefix + username, groups


__all__ = ["OIDCAuthenticator", "TokenError", "prefix_from_flags"]
