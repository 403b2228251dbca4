"""kubeadm init/join: the join secrets never reach a return, a log or an argument list,
open only on the minion they were sealed for, expire, and are forgotten after the joins."""

import json
import stat
import time
from pathlib import Path
from unittest.mock import patch

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load, utils

kubeadm = load("_modules", "kubeadm")
kubeadm_secrets = load("_modules", "kubeadm_secrets")
kubeadm_join = load("_modules", "kubeadm_join")
joindata = load("_utils", "kubeadm_joindata")
UTILS = utils("kubeadm_cli", "kubeadm_joindata")
INIT_OUT = (Path(__file__).parent / "samples" / "kubeadm_init_ha.txt").read_text()
TOKEN_SECRET = "a8uxyaju799qwdjv"
CERT_KEY = "f8902e114ef118304e561c3ecd4d0b543adc226b7a07f675f56564185ffe0c07"


def _keypair(directory: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "minion.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / "minion.pub").write_bytes(pub)
    return pub.decode()


class Kubeadm:
    """cmd.run_all stand-in that records calls and answers like kubeadm."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.calls: list[tuple[list, dict]] = []
        self.configs: list[str] = []

    def __call__(self, cmd, **kw):
        self.calls.append((cmd, kw))
        if "--config" in cmd and cmd[1] == "join":
            path = Path(cmd[cmd.index("--config") + 1])
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            self.configs.append(path.read_text())
        key = " ".join(cmd[1:3])
        return {"retcode": 0, "stdout": self.answers.get(key, ""), "stderr": ""}


@pytest.fixture
def dirs(tmp_path):
    with (
        patch.object(kubeadm, "ADMIN_CONF", tmp_path / "admin.conf"),
        patch.object(kubeadm, "MANIFESTS", tmp_path / "manifests"),
        patch.object(kubeadm_join, "KUBELET_CONF", tmp_path / "kubelet.conf"),
        patch.object(kubeadm_join, "MANIFESTS", tmp_path / "manifests"),
    ):
        yield tmp_path


@pytest.fixture
def configure_loader_modules(tmp_path):
    # A non-default kubeadm:config_dir, as pillar may set it: every path must follow it.
    config_dir = str(tmp_path / "kubeadm")
    config = {"kubeha:kubeadm:config_dir": config_dir}
    salt = {"config.get": lambda key, default="": config.get(key, default)}
    salt["kubeadm.config_dir"] = lambda: config_dir
    return {
        kubeadm: {"__salt__": dict(salt), "__utils__": UTILS, "__opts__": {"id": "cp-1"}},
        kubeadm_secrets: {"__salt__": dict(salt), "__utils__": UTILS, "__opts__": {"id": "cp-1"}},
        kubeadm_join: {
            "__salt__": dict(salt),
            "__utils__": UTILS,
            "__opts__": {"pki_dir": str(tmp_path / "cp2-pki"), "id": "cp-2"},
        },
    }


def _open(sealed: str, pki: Path, minion_id: str) -> dict:
    return joindata.unseal(sealed, (pki / "minion.pem").read_bytes(), minion_id)


def test_init_keeps_secrets_in_a_0600_file_and_out_of_the_return(dirs):
    run = Kubeadm({"init --config": INIT_OUT})
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        ret = kubeadm.init()
    cmd, kw = run.calls[0]
    config = str(dirs / "kubeadm" / "kubeadm-config.yaml")  # from kubeadm:config_dir
    assert cmd == ["kubeadm", "init", "--config", config, "--upload-certs"]
    assert kw["output_loglevel"] == "quiet"
    blob = json.dumps(ret)
    assert TOKEN_SECRET not in blob and CERT_KEY not in blob
    assert ret["token_id"] == "9vr73a" and ret["has_certificate_key"] is True
    assert ret["endpoint"] == "192.168.0.200:6443"
    stored = Path(ret["join_data_file"])
    assert stored == dirs / "kubeadm" / "join-data.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text())["certificate_key"] == CERT_KEY


def test_init_failure_is_redacted(dirs):
    def fail(cmd, **kw):
        err = f"error: token 9vr73a.{TOKEN_SECRET} --certificate-key {CERT_KEY}"
        return {"retcode": 1, "stdout": "", "stderr": err}

    with (
        patch.dict(kubeadm.__salt__, {"cmd.run_all": fail}),
        pytest.raises(CommandExecutionError) as err,
    ):
        kubeadm.init()
    assert TOKEN_SECRET not in str(err.value) and CERT_KEY not in str(err.value)
    assert "9vr73a.<redacted>" in str(err.value)


def test_sealed_join_data_opens_only_on_the_recipient_and_joins(dirs, tmp_path):
    recipient = _keypair(tmp_path / "cp2-pki")
    other = _keypair(tmp_path / "cp9-pki")  # some other minion
    run = Kubeadm({"init --config": INIT_OUT})
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        kubeadm.init()
    with patch.dict(kubeadm_secrets.__salt__, {"cmd.run_all": run}):
        sealed = kubeadm_secrets.join_data(recipient, "cp-2", control_plane=True)
        for_other = kubeadm_secrets.join_data(other, "cp-9", control_plane=True)
    assert TOKEN_SECRET not in json.dumps(sealed) and CERT_KEY not in json.dumps(sealed)
    assert sealed["token_id"] == "9vr73a"
    # init just ran: the token and certificate key are fresh, nothing was re-created
    assert len(run.calls) == 1

    # Another minion's key cannot open it; nor can cp-2 open one sealed for cp-9, or one
    # sealed to its key but for another minion id (the id is bound into the ciphertext).
    with pytest.raises(CommandExecutionError, match="not sealed for cp-9"):
        _open(sealed["sealed"], tmp_path / "cp9-pki", "cp-9")
    with pytest.raises(CommandExecutionError, match="not sealed for cp-2"):
        _open(for_other["sealed"], tmp_path / "cp2-pki", "cp-2")
    misdirected = joindata.seal({"token": "x"}, recipient, "cp-9")
    with pytest.raises(CommandExecutionError, match="not sealed for cp-2"):
        _open(misdirected, tmp_path / "cp2-pki", "cp-2")
    # ... and it expires: a blob kept for later is refused.
    late = time.time() + joindata.SEALED_LIFETIME_S + 1
    with pytest.raises(CommandExecutionError, match="expired"):
        joindata.unseal(
            sealed["sealed"], (tmp_path / "cp2-pki" / "minion.pem").read_bytes(), "cp-2", now=late
        )

    join_run = Kubeadm({})
    with patch.dict(kubeadm_join.__salt__, {"cmd.run_all": join_run}):
        ret = kubeadm_join.join(
            sealed["sealed"], control_plane=True, advertise_address="198.18.0.12",
            node_name="cp-2",
        )  # fmt: skip
    assert ret["joined"] and TOKEN_SECRET not in json.dumps(ret)
    cmd, kw = join_run.calls[0]
    assert cmd[:3] == ["kubeadm", "join", "--config"] and kw["output_loglevel"] == "quiet"
    assert TOKEN_SECRET not in " ".join(cmd) and CERT_KEY not in " ".join(cmd)
    assert not Path(cmd[3]).exists(), "the JoinConfiguration with secrets was left behind"
    assert Path(cmd[3]).parent == dirs / "kubeadm"
    cfg = yaml.safe_load(join_run.configs[0])
    assert cfg["kind"] == "JoinConfiguration" and cfg["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert cfg["discovery"]["bootstrapToken"]["token"] == f"9vr73a.{TOKEN_SECRET}"
    assert cfg["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "192.168.0.200:6443"
    assert cfg["controlPlane"]["certificateKey"] == CERT_KEY
    assert cfg["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "198.18.0.12"
    assert cfg["nodeRegistration"]["name"] == "cp-2"


def test_stale_join_data_gets_a_new_token_and_certificate_key(dirs, tmp_path):
    recipient = _keypair(tmp_path / "cp2-pki")
    joindata.store(
        dirs / "kubeadm",
        {"endpoint": "198.18.0.10:8443", "token": "abcdef.0123456789abcdef",
         "ca_cert_hashes": ["sha256:" + "0" * 64], "token_expires": 0,
         "certificate_key": "1" * 64, "certificate_key_expires": 0}
    )  # fmt: skip
    run = Kubeadm({
        "token create": "zyxwvu.9876543210zyxwvu\n",
        "init phase": "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" "
                      "in the \"kube-system\" Namespace\n[upload-certs] Using certificate key:\n"
                      + "2" * 64 + "\n",
    })  # fmt: skip
    with patch.dict(kubeadm_secrets.__salt__, {"cmd.run_all": run}):
        ret = kubeadm_secrets.join_data(recipient, "cp-2")
    # The replaced token is deleted: one kubeha token alive at a time.
    assert [c[0][1:3] for c in run.calls] == [
        ["token", "create"],
        ["token", "delete"],
        ["init", "phase"],
    ]
    assert run.calls[1][0][3] == "abcdef"
    assert all(kw["output_loglevel"] == "quiet" for _, kw in [run.calls[0], run.calls[2]])
    assert ret["token_id"] == "zyxwvu"
    opened = _open(ret["sealed"], tmp_path / "cp2-pki", "cp-2")
    assert opened["certificate_key"] == "2" * 64 and opened["token"].startswith("zyxwvu.")


def test_join_refuses_a_loose_join_file(dirs, tmp_path):
    loose = tmp_path / "join.json"
    loose.write_text("{}")
    loose.chmod(0o644)
    with pytest.raises(CommandExecutionError, match="chmod 600"):
        kubeadm_join.join(join_file=str(loose))


JOIN_CMD = (
    "kubeadm join 192.168.0.200:6443 --token {token} --discovery-token-ca-cert-hash "
    "sha256:7c2e69131a36ae2a042a339b33381c6d0d43887e2de83720eff5359e26aec866\n"
)


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("2h", 7200), ("1h30m", 5400), ("45m", 2700), ("90s", 90), ("0", None)]
)
def test_token_ttl_reads_like_kubeadm(ttl, seconds):
    assert kubeadm._ttl_seconds(ttl) == seconds


def test_token_create_records_its_own_expiry(dirs, tmp_path):
    """A short token made after init must not be sealed on the strength of init's 24 h."""
    recipient = _keypair(tmp_path / "cp2-pki")
    short = "shortt.0123456789abcdef"
    renewed = "renewd.fedcba9876543210"
    run = Kubeadm({
        "init --config": INIT_OUT,
        "token create": JOIN_CMD.format(token=short),
    })  # fmt: skip
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        kubeadm.init()
        before = time.time()
        ret = kubeadm.token_create(ttl="5m")
        assert before + 300 - 1 <= ret["token_expires"] <= time.time() + 300
        stored = json.loads((dirs / "kubeadm" / "join-data.json").read_text())
        assert stored["token"] == short and stored["token_expires"] == ret["token_expires"]
    # 5 min left is inside join_data's 10 min margin: it must renew, not seal `short`.
    run.answers["token create"] = renewed + "\n"
    with patch.dict(kubeadm_secrets.__salt__, {"cmd.run_all": run}):
        sealed = kubeadm_secrets.join_data(recipient, "cp-2", control_plane=False)
    assert [c[0][1:3] for c in run.calls].count(["token", "create"]) == 2
    assert _open(sealed["sealed"], tmp_path / "cp2-pki", "cp-2")["token"] == renewed


def test_token_create_ttl_0_never_expires_and_bad_ttl_runs_nothing(dirs):
    run = Kubeadm({"token create": JOIN_CMD.format(token="forevr.0123456789abcdef")})
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        assert kubeadm.token_create(ttl="0")["token_expires"] is None
        stored = joindata.load(dirs / "kubeadm")
        assert kubeadm_secrets._token_expiring(stored, 1e12) is False
        with pytest.raises(CommandExecutionError, match="not a token TTL"):
            kubeadm.token_create(ttl="2 hours")
    assert len(run.calls) == 1


def test_forget_deletes_token_certificates_and_the_stored_data(dirs):
    run = Kubeadm({"init --config": INIT_OUT})
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        kubeadm.init()
    deleted = Kubeadm({})

    def answer(cmd, **kw):
        deleted(cmd, **kw)
        if cmd[0] == "kubectl":
            return {"retcode": 0, "stdout": 'secret "kubeadm-certs" deleted\n', "stderr": ""}
        return {"retcode": 0, "stdout": 'bootstrap token "9vr73a" deleted\n', "stderr": ""}

    with patch.dict(kubeadm_secrets.__salt__, {"cmd.run_all": answer}):
        ret = kubeadm_secrets.forget()
        again = kubeadm_secrets.forget()
    assert ret == {
        "deleted_token": "9vr73a",
        "kubeadm_certs_deleted": True,
        "join_data_removed": True,
    }
    assert not (dirs / "kubeadm" / "join-data.json").exists()
    assert deleted.calls[0][0] == ["kubeadm", "token", "delete", "9vr73a"]
    kubectl = deleted.calls[1][0]
    assert kubectl[0] == "kubectl" and kubectl[-3:] == [
        "secret",
        "kubeadm-certs",
        "--ignore-not-found",
    ]
    assert "--request-timeout=30s" in kubectl and deleted.calls[1][1]["timeout"] == 60
    # A second run has no token to delete and no file; the Secret delete is idempotent.
    assert again["deleted_token"] is None and again["join_data_removed"] is False
    assert TOKEN_SECRET not in json.dumps(ret)
