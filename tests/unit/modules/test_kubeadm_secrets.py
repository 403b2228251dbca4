"""kubeadm init/join: the join secrets never reach a return, a log or an argument list."""

import json
import stat
from pathlib import Path
from unittest.mock import patch

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load

kubeadm = load("_modules", "kubeadm")
kubeadm_join = load("_modules", "kubeadm_join")
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
    kdir = tmp_path / "kubeadm"
    with (
        patch.object(kubeadm, "KUBEADM_DIR", kdir),
        patch.object(kubeadm, "JOIN_DATA", kdir / "join-data.json"),
        patch.object(kubeadm, "ADMIN_CONF", tmp_path / "admin.conf"),
        patch.object(kubeadm, "MANIFESTS", tmp_path / "manifests"),
        patch.object(kubeadm_join, "KUBEADM_DIR", kdir),
        patch.object(kubeadm_join, "KUBELET_CONF", tmp_path / "kubelet.conf"),
        patch.object(kubeadm_join, "MANIFESTS", tmp_path / "manifests"),
    ):
        yield tmp_path


@pytest.fixture
def configure_loader_modules(tmp_path):
    return {
        kubeadm: {"__salt__": {}, "__opts__": {"pki_dir": str(tmp_path / "cp1-pki")}},
        kubeadm_join: {"__salt__": {}, "__opts__": {"pki_dir": str(tmp_path / "cp2-pki")}},
    }


def test_init_keeps_secrets_in_a_0600_file_and_out_of_the_return(dirs):
    run = Kubeadm({"init --config": INIT_OUT})
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        ret = kubeadm.init("/etc/kubernetes/kubeadm/kubeadm-config.yaml")
    cmd, kw = run.calls[0]
    assert cmd == ["kubeadm", "init", "--config", "/etc/kubernetes/kubeadm/kubeadm-config.yaml",
                   "--upload-certs"]  # fmt: skip
    assert kw["output_loglevel"] == "quiet"
    blob = json.dumps(ret)
    assert TOKEN_SECRET not in blob and CERT_KEY not in blob
    assert ret["token_id"] == "9vr73a" and ret["has_certificate_key"] is True
    assert ret["endpoint"] == "192.168.0.200:6443"
    stored = Path(ret["join_data_file"])
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
    _keypair(tmp_path / "cp9-pki")  # some other minion
    run = Kubeadm({"init --config": INIT_OUT})
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        kubeadm.init()
        sealed = kubeadm.join_data(recipient, control_plane=True)
    assert TOKEN_SECRET not in json.dumps(sealed) and CERT_KEY not in json.dumps(sealed)
    assert sealed["token_id"] == "9vr73a"
    # init just ran: the token and certificate key are fresh, nothing was re-created
    assert len(run.calls) == 1

    with pytest.raises(CommandExecutionError, match="not sealed for this minion"):
        kubeadm_join._unseal(sealed["sealed"], (tmp_path / "cp9-pki" / "minion.pem").read_bytes())

    join_run = Kubeadm({})
    with patch.dict(
        kubeadm_join.__salt__,
        {"cmd.run_all": join_run, "kubeadm.redact": kubeadm.redact},
    ):
        ret = kubeadm_join.join(
            sealed["sealed"], control_plane=True, advertise_address="198.18.0.12",
            node_name="cp-2",
        )  # fmt: skip
    assert ret["joined"] and TOKEN_SECRET not in json.dumps(ret)
    cmd, kw = join_run.calls[0]
    assert cmd[:3] == ["kubeadm", "join", "--config"] and kw["output_loglevel"] == "quiet"
    assert TOKEN_SECRET not in " ".join(cmd) and CERT_KEY not in " ".join(cmd)
    assert not Path(cmd[3]).exists(), "the JoinConfiguration with secrets was left behind"
    cfg = yaml.safe_load(join_run.configs[0])
    assert cfg["kind"] == "JoinConfiguration" and cfg["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert cfg["discovery"]["bootstrapToken"]["token"] == f"9vr73a.{TOKEN_SECRET}"
    assert cfg["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "192.168.0.200:6443"
    assert cfg["controlPlane"]["certificateKey"] == CERT_KEY
    assert cfg["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "198.18.0.12"
    assert cfg["nodeRegistration"]["name"] == "cp-2"


def test_stale_join_data_gets_a_new_token_and_certificate_key(dirs, tmp_path):
    recipient = _keypair(tmp_path / "cp2-pki")
    kubeadm._store_join_data(
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
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        ret = kubeadm.join_data(recipient)
    assert [c[0][1:3] for c in run.calls] == [["token", "create"], ["init", "phase"]]
    assert all(kw["output_loglevel"] == "quiet" for _, kw in run.calls)
    assert ret["token_id"] == "zyxwvu"
    with patch.dict(kubeadm_join.__salt__, {}):
        opened = kubeadm_join._unseal(
            ret["sealed"], (tmp_path / "cp2-pki" / "minion.pem").read_bytes()
        )
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
    import time

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
        sealed = kubeadm.join_data(recipient, control_plane=False)
    assert [c[0][1:3] for c in run.calls].count(["token", "create"]) == 2
    opened = kubeadm_join._unseal(
        sealed["sealed"], (tmp_path / "cp2-pki" / "minion.pem").read_bytes()
    )
    assert opened["token"] == renewed


def test_token_create_ttl_0_never_expires_and_bad_ttl_runs_nothing(dirs):
    run = Kubeadm({"token create": JOIN_CMD.format(token="forevr.0123456789abcdef")})
    with patch.dict(kubeadm.__salt__, {"cmd.run_all": run}):
        assert kubeadm.token_create(ttl="0")["token_expires"] is None
        assert kubeadm._token_expiring(kubeadm._load_join_data(), 1e12) is False
        with pytest.raises(CommandExecutionError, match="not a token TTL"):
            kubeadm.token_create(ttl="2 hours")
    assert len(run.calls) == 1
