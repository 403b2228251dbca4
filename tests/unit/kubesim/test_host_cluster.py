"""kubesim's fidelity on the host: a kubeadm-built 3-node cluster in network namespaces.

The same checks as tests/lab/test_kubesim_fidelity.py, without the lab machines: nodes
are namespaces on the host (lab/kubesim/hostnode.py), the control-plane endpoint is cp-1's
apiserver. Real etcd 3.5 runs as the etcd static pod.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from lab.kubesim import fidelity  # noqa: E402
from lab.kubesim.hostcluster import HostCluster, config  # noqa: E402
from lab.kubesim.hostnode import write_launchers  # noqa: E402

pytestmark = pytest.mark.root
NODES = ["cp-1", "cp-2", "cp-3"]
IPS = {"cp-1": "198.18.0.21", "cp-2": "198.18.0.22", "cp-3": "198.18.0.23"}
KCM_LEASE = ("5s", "3s", "1s")  # KCM runs 5/3/1; the scheduler keeps the defaults 15/10/2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = Path("/tmp") / f"kubesim-host-{int(time.time())}"
    text = config(lease=KCM_LEASE).replace(
        """scheduler:
  extraArgs:
    leader-elect-lease-duration: 5s
    leader-elect-renew-deadline: 3s
    leader-elect-retry-period: 1s
""",
        "",
    )
    with HostCluster(work, [*NODES, "w-1"]) as c:
        started = time.monotonic()
        res = c.init(text)
        assert res.returncode == 0, res.stdout + res.stderr
        for node in c.nodes[1:3]:
            res = c.join_control_plane(node)
            assert res.returncode == 0, res.stdout + res.stderr
        c.build_seconds = time.monotonic() - started
        c.runner = lambda node, argv, timeout=120: c.nodes[NODES.index(node)].run(
            argv, timeout=timeout
        )
        c.etcdctl = str(c.first.workdir / "images" / "etcd" / "etcdctl")
        yield c


def test_init_and_two_joins_make_a_healthy_cluster(cluster):
    run = cluster.runner
    members = fidelity.wait(
        lambda: [
            m
            for m in fidelity.etcd_members(run, "cp-1", cluster.etcdctl)
            if m.get("name") and not m.get("isLearner")
        ],
        60,
        what="3 started etcd members",
    )
    assert sorted(m["name"] for m in members) == NODES
    ready = fidelity.wait(
        lambda: (
            all(r for r, _ in fidelity.nodes_ready(run, "cp-1").values())
            and fidelity.nodes_ready(run, "cp-1")
        ),
        60,
        what="3 Ready nodes",
    )
    assert ready == {n: (True, "v1.30.0") for n in NODES}
    for node, ip in IPS.items():
        assert fidelity.wait(
            lambda ip=ip, node=node: fidelity.readyz(run, node, ip)[0] == 200,
            60,
            what=f"{node} /readyz 200",
        )
    print(f"\n[measured] kubeadm init + 2 control-plane joins: {cluster.build_seconds:.1f}s")


def test_audit_log_follows_the_policy_through_extra_volumes(cluster):
    log = fidelity.must(cluster.runner("cp-1", ["cat", "/etc/kubernetes/audit/log/audit.log"]))
    events = [json.loads(line) for line in log.splitlines()]
    assert events, "the apiserver wrote no audit events"
    assert all(e["kind"] == "Event" and e["stage"] == "ResponseComplete" for e in events)
    assert all(e["level"] == "Metadata" for e in events)
    assert not any((e.get("objectRef") or {}).get("resource") == "leases" for e in events)
    assert any(e["user"]["username"] == "kubernetes-super-admin" for e in events)


def test_v1beta4_is_refused_by_kubeadm_130(cluster):
    path = cluster.first.workdir / "beta4.yaml"
    path.write_text(config(api="kubeadm.k8s.io/v1beta4"))
    res = cluster.runner("cp-1", ["kubeadm", "config", "validate", "--config", str(path)])
    assert res.returncode == 1
    assert (
        'no kind "InitConfiguration" is registered for version "kubeadm.k8s.io/v1beta4"'
        in res.stderr
    )


def test_crictl_stop_of_the_apiserver_is_undone_by_kubelet(cluster):
    run = cluster.runner
    before = fidelity.container(run, "cp-2", "kube-apiserver")
    fidelity.must(run("cp-2", ["crictl", "stop", before["status"]["id"]]))
    after = fidelity.wait(
        lambda: (
            (c := fidelity.container(run, "cp-2", "kube-apiserver"))["status"]["id"]
            != before["status"]["id"]
            and c
        ),
        30,
        what="a new kube-apiserver container",
    )
    assert after["status"]["metadata"]["attempt"] == before["status"]["metadata"]["attempt"] + 1
    assert fidelity.wait(
        lambda: fidelity.readyz(run, "cp-2", IPS["cp-2"])[0] == 200, 60, what="cp-2 ready again"
    )


def test_stopping_local_etcd_fails_readyz_while_the_port_accepts(cluster):
    run = cluster.runner
    fidelity.must(
        run("cp-3", ["mv", "/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/etcd.yaml"])
    )
    moved = time.monotonic()
    try:
        fidelity.wait(
            lambda: not fidelity.port_accepts(run, "cp-3", "127.0.0.1", 2379),
            30,
            interval=0.1,
            what="etcd gone",
        )
        gone = time.monotonic()
        fidelity.wait(
            lambda: fidelity.readyz(run, "cp-3", IPS["cp-3"])[0] == 500,
            30,
            interval=0.1,
            what="readyz 500",
        )
        failed = time.monotonic()
        assert fidelity.port_accepts(run, "cp-3", IPS["cp-3"])
        body = run("cp-3", ["curl", "-sk", f"https://{IPS['cp-3']}:6443/readyz?verbose"]).stdout
        assert "[-]etcd failed: reason withheld" in body and "readyz check failed" in body
        print(
            f"\n[measured] etcd gone {gone - moved:.2f}s after its manifest was moved out, "
            f"readyz failed {failed - gone:.2f}s after that"
        )
        # The kubelet notices the manifest within ~1 s (its sync loop) and etcd stops on
        # SIGTERM at once. The etcd check reads at most once per timeout/2 and each read
        # waits up to its 2 s timeout for a connection (factory/etcd3.go newETCD3Check,
        # clientv3 WaitForReady): its result turns failed within 1 + 2 = 3 s of etcd being
        # gone; the probe that reports it may also wait for etcd-readiness's read (2 s).
        # Margin: 1.5 s for a loaded 2-core machine and the probes' own process start-up.
        assert gone - moved <= 1.0 + 1.5
        assert failed - gone <= 3.0 + 2.0 + 1.5
    finally:
        fidelity.must(
            run("cp-3", ["mv", "/etc/kubernetes/etcd.yaml", "/etc/kubernetes/manifests/etcd.yaml"])
        )
    assert fidelity.wait(
        lambda: fidelity.readyz(run, "cp-3", IPS["cp-3"])[0] == 200,
        90,
        what="cp-3 ready after etcd returns",
    )


def test_hard_killed_kcm_leader_is_replaced_after_the_lease(cluster):
    result = fidelity.leader_failover(cluster.runner, NODES, "kube-controller-manager", "KILL")
    print(
        f"\n[measured] KCM SIGKILL failover (5/3/1): lease gap {result.gap_seconds:.2f}s, "
        f"seen after {result.wall_seconds:.2f}s"
    )
    assert result.new_holder != result.old_holder
    # lease 5 s; candidates poll every retry*(1..2.2): at most two such waits past the lease
    assert 5.0 <= result.gap_seconds <= 5.0 + 2 * 1 * 2.2 + 1.0


def test_sigterm_on_scheduler_leader_releases_the_lease(cluster):
    result = fidelity.leader_failover(cluster.runner, NODES, "kube-scheduler", "TERM")
    print(
        f"\n[measured] scheduler SIGTERM failover (15/10/2): seen after {result.wall_seconds:.2f}s"
    )
    assert result.wall_seconds <= 2 * 2 * 1.2 + 1.0


def test_drain_is_refused_by_a_pdb_that_would_be_violated(cluster):
    run = cluster.runner
    app = cluster.first.workdir / "app.yaml"
    app.write_text(fidelity.PDB_APP.replace("REPLICAS", "3"))
    fidelity.must(run("cp-1", ["kubectl", "apply", "-f", str(app)]))
    fidelity.wait(
        lambda: (
            fidelity.kubectl_json(run, "cp-1", "get", "pdb", "web")["status"].get("currentHealthy")
            == 3
        ),
        60,
        what="3 healthy pods behind the PDB",
    )
    res = run("cp-1", ["kubectl", "drain", "cp-2", "--ignore-daemonsets", "--timeout=8s"], 60)
    assert res.returncode == 1
    assert "Cannot evict pod as it would violate the pod's disruption budget." in res.stderr
    pods = fidelity.kubectl_json(run, "cp-1", "get", "pods", "-l", "app=web")["items"]
    assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 3
    fidelity.must(run("cp-1", ["kubectl", "uncordon", "cp-2"]))
    fidelity.must(run("cp-1", ["kubectl", "delete", "-f", str(app)]))


def _module(name: str, folder: str = "_modules"):
    """Load one of the project's execution modules or utils (they parse kubesim's output)."""
    import importlib.util

    path = REPO / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kubesim_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    module.__salt__ = {}
    spec.loader.exec_module(module)
    return module


def test_execution_modules_parse_kubesim_output(cluster):
    """The formula's modules read kubesim exactly as they read upstream's tools."""
    run = cluster.runner
    certs_mod, crictl_mod = (_module(n) for n in ("kubeadm_certs", "crictl"))
    kubeadm_cli = _module("kubeadm_cli", "_utils")
    table = certs_mod._parse_check_expiration(
        fidelity.must(run("cp-1", ["kubeadm", "certs", "check-expiration"]))
    )
    names = {c["name"] for c in table["certificates"]}
    assert {"admin.conf", "apiserver", "etcd-server", "super-admin.conf"} <= names
    assert {c["name"] for c in table["authorities"]} == {"ca", "etcd-ca", "front-proxy-ca"}
    assert all(300 < c["days_left"] < 366 for c in table["certificates"])
    join = kubeadm_cli.parse_join_commands(
        fidelity.must(
            run(
                "cp-1",
                [
                    "kubeadm",
                    "token",
                    "create",
                    "--print-join-command",
                    "--certificate-key",
                    "ab" * 32,
                ],
            )
        )
    )
    assert join["endpoint"] == "198.18.0.21:6443" and join["certificate_key"] == "ab" * 32
    assert join["ca_cert_hashes"][0].startswith("sha256:")
    containers = crictl_mod._parse_containers(
        json.loads(fidelity.must(run("cp-1", ["crictl", "ps", "-o", "json"])))
    )
    assert {c["name"] for c in containers} >= {"etcd", "kube-apiserver"}
    pods = crictl_mod._parse_pods(
        json.loads(fidelity.must(run("cp-1", ["crictl", "pods", "-o", "json"])))
    )
    assert any(p["name"] == "etcd-cp-1" and p["state"] == "READY" for p in pods)
    code = (
        "from kubernetes import client, config\n"
        "api = config.new_client_from_config(config_file='/etc/kubernetes/admin.conf')\n"
        "coord = client.CoordinationV1Api(api)\n"
        "lease = coord.read_namespaced_lease('kube-scheduler', 'kube-system')\n"
        "nodes = client.CoreV1Api(api).list_node().items\n"
        "info = nodes[0].status.node_info\n"
        "print(lease.spec.holder_identity.split('_')[0], len(nodes), info.kubelet_version)\n"
    )
    out = fidelity.must(run("cp-1", [str(REPO / ".venv/bin/python"), "-c", code]))
    holder, count, version = out.split()
    assert holder in NODES and count == "3" and version == "v1.30.0"


def test_worker_joins_with_a_token_and_the_kubelet_tls_bootstrap(cluster):
    run = cluster.runner
    res = cluster.join_worker(cluster.nodes[3])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "This node has joined the cluster:" in res.stdout
    ready = fidelity.wait(
        lambda: fidelity.nodes_ready(run, "cp-1").get("w-1", (False, ""))[0], 60, what="w-1 Ready"
    )
    assert ready
    node = fidelity.kubectl_json(run, "cp-1", "get", "node", "w-1")
    assert "node-role.kubernetes.io/control-plane" not in node["metadata"]["labels"]
    csrs = fidelity.kubectl_json(run, "cp-1", "get", "csr")["items"]
    assert any(
        c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
        and c["status"].get("certificate")
        for c in csrs
    )
    conf = fidelity.must(cluster.nodes[3].run(["cat", "/etc/kubernetes/kubelet.conf"]))
    assert "/var/lib/kubelet/pki/kubelet-client-current.pem" in conf


def _kubelet_pid(node) -> int:
    """The node's kubelet process (same network namespace, kubelet launcher in its argv)."""
    code = (
        "import os\n"
        "me = os.readlink('/proc/self/ns/net')\n"
        "for p in os.listdir('/proc'):\n"
        "    if not p.isdigit(): continue\n"
        "    try:\n"
        "        cmd = open(f'/proc/{p}/cmdline','rb').read().split(b'\\0')\n"
        "        same = os.readlink(f'/proc/{p}/ns/net') == me\n"
        "    except OSError: continue\n"
        "    if same and len(cmd) > 1 and cmd[1].endswith(b'/kubelet'): print(p)\n"
    )
    pids = fidelity.must(node.run(["/usr/bin/python3", "-c", code])).split()
    assert len(pids) == 1, pids
    return int(pids[0])


def test_static_pods_survive_a_kubelet_restart(cluster):
    run = cluster.runner
    before = {
        n: fidelity.container(run, "cp-2", n)["info"]["pid"] for n in ("etcd", "kube-apiserver")
    }
    pid = _kubelet_pid(cluster.nodes[1])
    fidelity.must(run("cp-2", ["kill", "-TERM", str(pid)]))
    fidelity.wait(lambda: _kubelet_pid(cluster.nodes[1]) != pid, 30, what="a new kubelet")
    time.sleep(3)
    after = {
        n: fidelity.container(run, "cp-2", n)["info"]["pid"] for n in ("etcd", "kube-apiserver")
    }
    assert after == before


def test_hard_killed_scheduler_leader_with_default_flags(cluster):
    result = fidelity.leader_failover(cluster.runner, NODES, "kube-scheduler", "KILL", timeout=90)
    print(f"\n[measured] scheduler SIGKILL failover (15/10/2): lease gap {result.gap_seconds:.2f}s")
    assert 15.0 <= result.gap_seconds <= 15.0 + 2 * 2 * 2.2 + 1.0


def test_certs_renew_all(cluster):
    run = cluster.runner
    serial = "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt"
    before = fidelity.must(run("cp-3", ["sh", "-c", serial]))
    out = fidelity.must(run("cp-3", ["kubeadm", "certs", "renew", "all"]))
    assert "certificate for serving the Kubernetes API renewed" in out
    assert "MISSING! certificate embedded in the kubeconfig file for the super-admin" in out
    assert "Done renewing certificates." in out
    assert fidelity.must(run("cp-3", ["sh", "-c", serial])) != before


WATCH = """
import threading, time
from kubernetes import client, config, watch
api = config.new_client_from_config(config_file='/etc/kubernetes/admin.conf')
core = client.CoreV1Api(api)
seen = []
def follow():
    for ev in watch.Watch().stream(core.list_namespaced_config_map, 'default', timeout_seconds=8):
        seen.append((ev['type'], ev['object'].metadata.name))
t = threading.Thread(target=follow); t.start(); time.sleep(1.5)
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name='watched'), data={'a': '1'})
core.create_namespaced_config_map('default', cm)
core.patch_namespaced_config_map('watched', 'default', {'data': {'a': '2'}})
core.delete_namespaced_config_map('watched', 'default')
t.join()
print(' '.join(f'{k}:{n}' for k, n in seen if n == 'watched'))
"""


def test_watch_streams_added_modified_deleted(cluster):
    out = fidelity.must(cluster.runner("cp-1", [str(REPO / ".venv/bin/python"), "-c", WATCH], 60))
    assert out.split() == ["ADDED:watched", "MODIFIED:watched", "DELETED:watched"]
    res = cluster.runner(
        "cp-1", ["kubectl", "wait", "--for=condition=Ready", "node/cp-2", "--timeout=20s"]
    )
    assert res.stdout.strip() == "node/cp-2 condition met"


def test_upgrade_apply_to_131_with_kubeadm_130_is_refused(cluster):
    res = cluster.runner("cp-1", ["kubeadm", "upgrade", "apply", "v1.31.0", "-y"])
    assert res.returncode == 1
    assert 'is higher than the kubeadm version "v1.30.0"' in res.stderr


def test_upgrade_130_to_131_with_kubeadm_131(cluster):
    run = cluster.runner
    bin131 = cluster.workdir / "bin131"
    write_launchers(bin131, "v1.31.0")
    res = run("cp-1", [str(bin131 / "kubeadm"), "upgrade", "apply", "v1.31.0", "-y"], 400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (
        '[upgrade/successful] SUCCESS! Your cluster was upgraded to "v1.31.0". Enjoy!' in res.stdout
    )
    backups = run("cp-1", ["sh", "-c", "ls /etc/kubernetes/tmp"]).stdout
    assert "kubeadm-backup-manifests-" in backups and "kubeadm-backup-etcd-" in backups
    pod = fidelity.kubectl_json(
        run, "cp-1", "get", "pod", "kube-apiserver-cp-1", "-n", "kube-system"
    )
    assert pod["spec"]["containers"][0]["image"] == "registry.k8s.io/kube-apiserver:v1.31.0"
    # the other control planes: `upgrade node --config` with a v1beta4 UpgradeConfiguration
    upgrade_cfg = cluster.nodes[1].workdir / "upgrade.yaml"
    upgrade_cfg.write_text(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\n"
        "node:\n  certificateRenewal: true\n  etcdUpgrade: true\n"
    )
    res = run(
        "cp-2", [str(bin131 / "kubeadm"), "upgrade", "node", "--config", str(upgrade_cfg)], 400
    )
    assert res.returncode == 0, res.stdout + res.stderr
    pod = fidelity.kubectl_json(
        run, "cp-1", "get", "pod", "kube-apiserver-cp-2", "-n", "kube-system"
    )
    assert pod["spec"]["containers"][0]["image"].endswith(":v1.31.0")
    cm = fidelity.kubectl_json(run, "cp-1", "get", "cm", "kubeadm-config", "-n", "kube-system")
    assert "kubernetesVersion: v1.31.0" in cm["data"]["ClusterConfiguration"]
    assert "kubeadm.k8s.io/v1beta4" in cm["data"]["ClusterConfiguration"]
    members = fidelity.etcd_members(run, "cp-1", cluster.etcdctl)
    assert len(members) == 3
    version = json.loads(fidelity.must(run("cp-3", ["kubectl", "get", "--raw", "/version"])))
    assert version["gitVersion"] in ("v1.30.0", "v1.31.0")


def test_reset_removes_the_etcd_member(cluster):
    run = cluster.runner
    res = run("cp-3", ["kubeadm", "reset", "-f"], 120)
    assert res.returncode == 0, res.stdout + res.stderr
    members = fidelity.etcd_members(run, "cp-1", cluster.etcdctl)
    assert sorted(m["name"] for m in members) == ["cp-1", "cp-2"]
    assert fidelity.must(run("cp-3", ["ls", "/etc/kubernetes/manifests"])).strip() == ""
    assert fidelity.must(run("cp-3", ["crictl", "ps", "-q"])).strip() == ""


def test_skipping_a_minor_129_to_131_is_refused(tmp_path):
    work = Path("/tmp") / f"kubesim-host129-{int(time.time())}"
    with HostCluster(work, ["cp-9"], version="v1.29.15") as c:
        res = c.init(config(version="v1.29.15", node="cp-9"))
        assert res.returncode == 0, res.stdout + res.stderr
        bin131 = work / "bin131"
        write_launchers(bin131, "v1.31.0")
        res = c.first.run(
            [str(bin131 / "kubeadm"), "upgrade", "apply", "v1.31.0", "-y"], timeout=120
        )
        assert res.returncode == 1
        assert "kubeadm can upgrade only 1 minor version at a time" in res.stderr
