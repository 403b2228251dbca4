"""kubeadm's read-only functions with ``cmd.run_all`` answering as kubeadm does: the command
line each runs, what it returns, and what it raises. Output is kubeadm's own (samples/README.md;
version.go RunVersion prints GitVersion for ``-o short``, config.go newCmdConfigValidate
prints ``ok``; errors are printed by kubeadm's util/error.go checkErr with its stack-trace
hint). ca_cert_hash is checked against kubeadm's own test vector and against openssl."""

import datetime as dt
import json
import subprocess
from pathlib import Path
from unittest.mock import patch

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from salt.exceptions import CommandExecutionError

from tests.conftest import require_binary
from tests.unit.modules.khm_cmd import RunAll, fails, ok, tabwriter
from tests.unit.modules.khm_load import all_utils, load

kubeadm = load("_modules", "kubeadm")
SAMPLES = Path(__file__).parent / "samples"
STACK_HINT = "\nTo see the stack trace of this error execute with --v=5 or higher\n"
SETTINGS: dict = {}


@pytest.fixture
def configure_loader_modules():
    SETTINGS.clear()
    return {
        kubeadm: {
            "__salt__": {"config.get": lambda key, default=None: SETTINGS.get(key, default)},
            "__utils__": all_utils(),
        }
    }


def _with(run_all: RunAll):
    return patch.dict(kubeadm.__salt__, {"cmd.run_all": run_all})


def test_version_is_kubeadms_short_version():
    run_all = RunAll({("kubeadm", "version", "-o", "short"): ok("v1.30.0\n")})
    with _with(run_all):
        assert kubeadm.version() == "v1.30.0"
    assert run_all.calls == [["kubeadm", "version", "-o", "short"]]
    assert run_all.kwargs[0]["python_shell"] is False


def test_version_failure_names_the_command():
    run_all = RunAll({("kubeadm",): fails("exec format error")})
    with (
        _with(run_all),
        pytest.raises(CommandExecutionError, match="^kubeadm version .*failed: exec format error"),
    ):
        kubeadm.version()


def test_config_validate_passes_kubeadms_ok():
    run_all = RunAll({("kubeadm", "config", "validate"): ok("ok\n")})
    with _with(run_all):
        ret = kubeadm.config_validate("/srv/cfg/kubeadm-config.yaml")
    assert ret == {"valid": True, "config": "/srv/cfg/kubeadm-config.yaml", "output": "ok"}
    assert run_all.calls == [
        ["kubeadm", "config", "validate", "--config", "/srv/cfg/kubeadm-config.yaml"]
    ]


def test_config_validate_defaults_to_the_models_config_dir():
    run_all = RunAll({("kubeadm", "config", "validate"): ok("ok\n")})
    with _with(run_all):
        default = kubeadm.config_validate()["config"]
        SETTINGS["kubeha:kubeadm:config_dir"] = "/srv/kubeadm"
        moved = kubeadm.config_validate()["config"]
    assert default == "/etc/kubernetes/kubeadm/kubeadm-config.yaml"
    assert moved == "/srv/kubeadm/kubeadm-config.yaml"
    assert run_all.calls[1][-1] == moved


def test_config_validate_raises_with_kubeadms_complaint():
    # os.ReadFile's error as checkErr prints it: kubeadm exits 1
    missing = "/etc/kubernetes/kubeadm/kubeadm-config.yaml"
    err = f"open {missing}: no such file or directory{STACK_HINT}"
    run_all = RunAll({("kubeadm", "config", "validate"): fails(err)})
    with _with(run_all), pytest.raises(CommandExecutionError) as raised:
        kubeadm.config_validate(missing)
    assert str(raised.value).startswith("kubeadm config validate failed: open ")
    assert "no such file or directory" in str(raised.value)


def test_token_list_runs_quietly_and_drops_the_secret_half():
    text = (SAMPLES / "kubeadm_token_list.txt").read_text()
    run_all = RunAll({("kubeadm", "token", "list"): ok(text)})
    with _with(run_all):
        tokens = kubeadm.token_list()
    assert run_all.calls == [["kubeadm", "token", "list"]]
    assert run_all.kwargs[0]["output_loglevel"] == "quiet"  # the output holds the secrets
    assert [t["token_id"] for t in tokens] == ["02feuk", "2u57r3"]
    assert tokens[1]["expires"] == "2021-10-21T07:01:12Z" and tokens[1]["ttl"] == "5h"
    assert "y58j1moawikcz1ne" not in json.dumps(tokens)
    assert "pb5dba3no1bi88u8" not in json.dumps(tokens)


HEADER = ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]


def test_token_list_without_tokens_is_empty():
    # Newer kubeadm prints nothing when there is no token, older ones the header alone.
    for text in ("", tabwriter([HEADER])):
        with _with(RunAll({("kubeadm", "token", "list"): ok(text)})):
            assert kubeadm.token_list() == []


def test_a_token_that_never_expires():
    # token.go humanReadableBootstrapToken: "<forever>"/"<never>" for a ttl 0 token, "<none>"
    # for an empty group list.
    row = ["9a08jv.c0izixklcxtmnze7", "<forever>", "<never>", "signing", "kubeha", "<none>"]
    with _with(RunAll({("kubeadm", "token", "list"): ok(tabwriter([HEADER, row]))})):
        (token,) = kubeadm.token_list()
    assert token == {
        "token_id": "9a08jv",
        "ttl": "<forever>",
        "expires": "<never>",
        "usages": ["signing"],
        "description": "kubeha",
        "extra_groups": [],
    }


def test_token_list_error_is_redacted():
    err = "unable to list tokens for abcdef.0123456789abcdef: Unauthorized" + STACK_HINT
    with (
        _with(RunAll({("kubeadm", "token", "list"): fails(err)})),
        pytest.raises(CommandExecutionError) as raised,
    ):
        kubeadm.token_list()
    assert "0123456789abcdef" not in str(raised.value)
    assert "abcdef.<redacted>" in str(raised.value)


def test_is_initialized_needs_admin_conf_and_the_apiserver_manifest(tmp_path):
    admin, manifests = tmp_path / "admin.conf", tmp_path / "manifests"
    with patch.object(kubeadm, "ADMIN_CONF", admin), patch.object(kubeadm, "MANIFESTS", manifests):
        assert kubeadm.is_initialized() is False
        admin.write_text("apiVersion: v1\nkind: Config\n")
        assert kubeadm.is_initialized() is False  # e.g. a reset that stopped half way
        manifests.mkdir()
        (manifests / "kube-apiserver.yaml").write_text("kind: Pod\n")
        assert kubeadm.is_initialized() is True
        admin.unlink()
        assert kubeadm.is_initialized() is False


def test_ca_cert_hash_matches_kubeadms_own_test_vector():
    # cmd/kubeadm/app/util/pubkeypin/pubkeypin_test.go: testCertPEM and expectedHash
    expected = "sha256:345959acb2c3b2feb87d281961c893f62a314207ef02599f1cc4a5fb255480b3"
    assert kubeadm.ca_cert_hash(str(SAMPLES / "kubeadm_pubkeypin_test.crt")) == expected


def _ec_ca(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())  # kubeadm's ECDSA-P256 encryptionAlgorithm
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_ca_cert_hash_agrees_with_the_documented_openssl_pipeline(tmp_path):
    """kubeadm join's docs: openssl x509 -pubkey | openssl (rsa|pkey) -pubin -outform der |
    openssl dgst -sha256; `pkey` covers RSA and ECDSA keys alike."""
    openssl = require_binary("openssl")
    ca = tmp_path / "ca.crt"
    _ec_ca(ca)
    pem = subprocess.run(
        [openssl, "x509", "-pubkey", "-noout", "-in", str(ca)],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "der"],
        input=pem,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    digest = subprocess.run(
        [openssl, "dgst", "-sha256", "-hex"], input=der, capture_output=True, check=True, timeout=30
    ).stdout.decode()
    assert kubeadm.ca_cert_hash(str(ca)) == "sha256:" + digest.split()[-1]
