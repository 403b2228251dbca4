"""kubesim's OIDC token authenticator against a real HTTPS issuer on 127.0.0.1: discovery,
JWKS (cache, rotation), go-oidc's checks and oidc.go's claim mapping (upstream
plugin/pkg/authenticator/token/oidc/oidc.go), through auth.authenticate (401 or a user)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from kubesim.apiserver import auth
from kubesim.apiserver.oidc import OIDCAuthenticator, TokenError
from kubesim.apiserver.store import StatusError

sys.path.insert(0, str(Path(__file__).parent))
from oidc_issuer import Issuer, Key, unsigned  # noqa: E402


@pytest.fixture
def issuer(tmp_path):
    iss = Issuer(tmp_path).start()
    iss.keys = [Key("k1")]
    yield iss
    iss.stop()


def make(iss: Issuer, **flags) -> OIDCAuthenticator:
    base = {
        "oidc-issuer-url": iss.url,
        "oidc-client-id": "kubernetes",
        "oidc-ca-file": iss.ca_file,
        "oidc-groups-claim": "groups",
        "oidc-groups-prefix": "oidc:",
    }
    base.update(flags)
    oidc = OIDCAuthenticator({k: v for k, v in base.items() if v is not None})
    oidc.min_refresh = 0.0
    oidc.discover()
    oidc.refresh_keys()
    return oidc


def login(oidc: OIDCAuthenticator, token: str) -> auth.User:
    return auth.authenticate(lambda _name: None, f"Bearer {token}", None, oidc)


def test_good_token_maps_user_and_groups_with_prefixes(issuer):
    oidc = make(issuer)
    token = issuer.keys[0].sign(issuer.claims(groups=["devs", "ops"]))
    user = login(oidc, token)
    assert user.name == f"{issuer.url}#alice"  # default prefix: issuer URL + '#'
    assert user.groups == ["oidc:devs", "oidc:ops", "system:authenticated"]


def test_es256_when_configured(issuer):
    issuer.keys = [Key("e1", "EC")]
    oidc = make(issuer, **{"oidc-signing-algs": "RS256,ES256"})
    assert login(oidc, issuer.keys[0].sign(issuer.claims())).name.endswith("#alice")
    # RS256 only (the default): an ES256 token is refused
    with pytest.raises(TokenError, match="unsupported algorithm"):
        make(issuer).authenticate(issuer.keys[0].sign(issuer.claims()))


def test_groups_claim_string_or_list_or_absent(issuer):
    oidc = make(issuer, **{"oidc-groups-prefix": None})
    key = issuer.keys[0]
    assert login(oidc, key.sign(issuer.claims(groups="admins"))).groups == [
        "admins",
        "system:authenticated",
    ]
    assert login(oidc, key.sign(issuer.claims(groups=["a", "b"]))).groups[:2] == ["a", "b"]
    assert login(oidc, key.sign(issuer.claims())).groups == ["system:authenticated"]
    with pytest.raises(TokenError, match="parse groups claim"):
        oidc.authenticate(key.sign(issuer.claims(groups=[1])))


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": 1000}, "token is expired"),
        ({"exp": None}, "token is expired"),
        ({"aud": "other"}, "expected audience"),
        ({"aud": ["a", "b"]}, "expected audience"),
        ({"nbf": int(time.time()) + 3600}, "before the nbf"),
    ],
)
def test_rejected_claims(issuer, claims, message):
    oidc = make(issuer)
    token = issuer.keys[0].sign(issuer.claims(**claims))
    with pytest.raises(TokenError, match=message):
        oidc.authenticate(token)
    with pytest.raises(StatusError) as err:
        login(oidc, token)
    assert err.value.code == 401


def test_audience_list_and_nbf_leeway_accepted(issuer):
    oidc = make(issuer)
    claims = issuer.claims(aud=["other", "kubernetes"], nbf=int(time.time()) + 30)
    assert login(oidc, issuer.keys[0].sign(claims)).name.endswith("#alice")


def test_other_issuer_is_not_ours(issuer):
    oidc = make(issuer)
    token = issuer.keys[0].sign(issuer.claims(iss="https://elsewhere.example"))
    assert oidc.authenticate(token) is None  # hasCorrectIssuer: the union goes on
    with pytest.raises(StatusError) as err:
        login(oidc, token)
    assert err.value.code == 401
    assert oidc.authenticate("abcdef.0123456789abcdef") is None  # a bootstrap token's shape


def test_bad_signature_and_refused_algorithms(issuer):
    oidc = make(issuer)
    forged = Key("k1").sign(issuer.claims())  # same kid, another key
    with pytest.raises(TokenError, match="failed to verify signature"):
        oidc.authenticate(forged)
    good = issuer.keys[0].sign(issuer.claims())
    head, payload, sig = good.split(".")
    tampered = issuer.keys[0].sign(issuer.claims(sub="mallory")).split(".")[1]
    with pytest.raises(TokenError, match="failed to verify signature"):
        oidc.authenticate(f"{head}.{tampered}.{sig}")
    with pytest.raises(TokenError, match='got "none"'):
        oidc.authenticate(unsigned(issuer.claims()))
    with pytest.raises(TokenError, match='got "HS256"'):
        oidc.authenticate(unsigned(issuer.claims(), "HS256", b"x" * 32))
    with pytest.raises(ValueError, match="unsupported signing alg: HS256"):
        OIDCAuthenticator({"oidc-issuer-url": issuer.url, "oidc-signing-algs": "HS256"})


def test_unknown_kid_refetches_keys_once_rotated(issuer):
    oidc = make(issuer)
    fetched = issuer.jwks_fetches
    assert login(oidc, issuer.keys[0].sign(issuer.claims()))
    assert issuer.jwks_fetches == fetched  # cached
    new = Key("k2")
    token = new.sign(issuer.claims())
    with pytest.raises(TokenError):  # not published yet: refetched, still unknown
        oidc.authenticate(token)
    assert issuer.jwks_fetches == fetched + 1
    issuer.keys = [new]  # rotation
    assert login(oidc, token).name.endswith("#alice")
    assert issuer.jwks_fetches == fetched + 2
    # refetches are rate-limited
    oidc.min_refresh = 60.0
    with pytest.raises(TokenError):
        oidc.authenticate(Key("k3").sign(issuer.claims()))
    assert issuer.jwks_fetches == fetched + 2


def test_required_claim(issuer):
    oidc = make(issuer, **{"oidc-required-claim": "hd=example.com"})
    key = issuer.keys[0]
    assert login(oidc, key.sign(issuer.claims(hd="example.com")))
    with pytest.raises(TokenError, match="required claim hd not present"):
        oidc.authenticate(key.sign(issuer.claims()))
    with pytest.raises(TokenError, match="Got = other.org, want = example.com"):
        oidc.authenticate(key.sign(issuer.claims(hd="other.org")))


def test_email_claim_rules(issuer):
    oidc = make(issuer, **{"oidc-username-claim": "email"})
    key = issuer.keys[0]
    # no prefix by default for email; email_verified must be true when present
    assert login(oidc, key.sign(issuer.claims(email="a@x.org"))).name == "a@x.org"
    ok = key.sign(issuer.claims(email="a@x.org", email_verified=True))
    assert login(oidc, ok).name == "a@x.org"
    with pytest.raises(TokenError, match="email not verified"):
        oidc.authenticate(key.sign(issuer.claims(email="a@x.org", email_verified=False)))
    with pytest.raises(TokenError, match="claim not present"):
        oidc.authenticate(key.sign(issuer.claims()))


def test_username_prefix_flags(issuer):
    key = issuer.keys[0]
    token = key.sign(issuer.claims())
    assert login(make(issuer, **{"oidc-username-prefix": "-"}), token).name == "alice"
    assert login(make(issuer, **{"oidc-username-prefix": "oidc:"}), token).name == "oidc:alice"
    other = make(issuer, **{"oidc-username-claim": "name", "oidc-username-prefix": "-"})
    assert login(other, key.sign(issuer.claims(name="Alice A"))).name == "Alice A"


def test_discovery_issuer_must_match(issuer):
    issuer.issuer_override = issuer.url + "/"
    oidc = OIDCAuthenticator({"oidc-issuer-url": issuer.url, "oidc-ca-file": issuer.ca_file})
    with pytest.raises(ValueError, match="issuer did not match"):
        oidc.discover()


def test_untrusted_issuer_certificate(issuer, tmp_path):
    oidc = OIDCAuthenticator({"oidc-issuer-url": issuer.url})  # system roots only
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        oidc.discover()


def test_issuer_down_at_start_then_up(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    iss = Issuer(tmp_path, port)
    iss.keys = [Key("k1")]
    oidc = OIDCAuthenticator(
        {"oidc-issuer-url": iss.url, "oidc-client-id": "kubernetes", "oidc-ca-file": iss.ca_file}
    )
    oidc.retry_seconds = 0.2
    started = time.monotonic()
    thread = oidc.start()
    assert time.monotonic() - started < 1  # never blocks the caller
    token = iss.keys[0].sign(iss.claims())
    time.sleep(0.5)
    with pytest.raises(TokenError, match="authenticator not initialized"):
        oidc.authenticate(token)
    iss.start()
    try:
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert login(oidc, token).name == f"{iss.url}#alice"
    finally:
        iss.stop()
