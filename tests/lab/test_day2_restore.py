"""
End to end on the lab (issue 15): a disaster restore. A ConfigMap written before a backup,
another after it; then etcd's data wiped on all three control planes (the cluster is gone);
`orch.etcd_restore` with the backup named brings it back: the first ConfigMap is there, the
second is not, and the cluster passes the final gate. Also: the orchestration refuses, changing
nothing, when the backup is not named or not confirmed.

The lab's etcd is kubesim's etcd 3.5.1, whose etcdutl has no --bump-revision (3.5.10 has
it): the restore runs with bump_revision=0 here, which the runner refuses unless asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from lab import formula
from lab.api import Lab
from lab.saltmaster import HOME

pytestmark = [pytest.mark.lab, pytest.mark.root]

CLUSTER = formula.CLUSTER
KUBECTL = ["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "--request-timeout=20s"]


def _record(job: str) -> dict:
    return json.loads((HOME / "cache" / "kubeha" / "day2" / CLUSTER / f"{job}.json").read_text())


def _configmap(lab: Lab, verb: str, name: str, check: bool = True):
    if verb == "create":
        # A manifest on stdin (`create -f -`): what kubectl and kubesim's kubectl both take.
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"},
               "metadata": {"name": name, "namespace": "default"}}  # fmt: skip
        script = f"echo '{json.dumps(doc)}' | {' '.join(KUBECTL)} create -f -"
        return lab.sh("cp-1", script, check=check, timeout=60)
    args = ["get", "configmap", name, "-o", "name"]
    return lab.exec("cp-1", *KUBECTL, "-n", "default", *args, check=check, timeout=60)


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[Lab]:
    formula.sync(lab)
    gate = lab.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)
    assert gate.get("result"), f"the lab has no healthy cluster (run test_bootstrap.py): {gate}"
    yield lab


def test_restore_is_refused_unless_named_and_confirmed(cluster: Lab):
    for pillar in ({"cluster": CLUSTER}, {"cluster": CLUSTER, "stamp": "20260101T000000Z"}):
        proc = cluster.salt_cli(
            "salt-run",
            "state.orch",
            "orch.etcd_restore",
            "pillar=" + json.dumps(pillar),
            timeout=120,
        )
        assert proc.returncode != 0
        assert "Nothing was changed" in proc.stdout + proc.stderr


def test_disaster_restore_after_wiping_etcd_on_every_control_plane(cluster: Lab):
    stamp_name = f"kubeha-before-{int(time.time())}"
    after_name = stamp_name.replace("before", "after")
    _configmap(cluster, "create", stamp_name)
    steps = formula.orch_steps(
        cluster.salt_run(
            "state.orch",
            "orch.etcd_backup",
            "pillar=" + json.dumps({"cluster": CLUSTER}),
            timeout=600,
        )
    )
    assert steps[0].result, steps
    stamp = _record("backup")["stamp"]
    _configmap(cluster, "create", after_name)
    # The disaster: every member's data gone. Every member is stopped (its manifest moved
    # away) before any data is removed. Wiped one node at a time (each restarted before the
    # next), the data was seen to survive: a member restarted on an empty data dir can be
    # sent a snapshot by the members still holding it. Then the manifests come back: the
    # first control plane's member (no --initial-cluster-state, so "new") starts an empty
    # cluster of its own, and nothing holds the old data.
    stop = (
        "set -e; mv /etc/kubernetes/manifests/etcd.yaml /root/etcd.yaml; "
        "for i in $(seq 1 60); do crictl ps --name etcd -q | grep -q . || exit 0; sleep 1; done; "
        "echo etcd still running >&2; exit 1"
    )
    for node in cluster.control_planes:
        cluster.sh(node, stop, timeout=120)
    for node in cluster.control_planes:
        cluster.sh(
            node,
            "set -e; rm -rf /var/lib/etcd/member; "
            "mv /root/etcd.yaml /etc/kubernetes/manifests/etcd.yaml",
            timeout=60,
        )
    assert _configmap(cluster, "get", stamp_name, check=False).returncode != 0
    started = time.monotonic()
    pillar = {"cluster": CLUSTER, "stamp": stamp, "confirm": True, "bump_revision": 0}
    ret = cluster.salt_run(
        "state.orch", "orch.etcd_restore", "pillar=" + json.dumps(pillar), timeout=1800
    )
    took = time.monotonic() - started
    (step,) = formula.orch_steps(ret)
    outcome = _record("restore")
    print(
        f"restore: {outcome.get('comment') or outcome.get('error')} ({took:.0f} s); steps "
        f"{outcome.get('steps')}"
    )
    assert step.result, outcome
    assert _configmap(cluster, "get", stamp_name).stdout.strip() == f"configmap/{stamp_name}"
    assert _configmap(cluster, "get", after_name, check=False).returncode != 0
    members = cluster.salt("cp-1", "etcdctl.member_list", timeout=60)["cp-1"]
    assert sorted(m["name"] for m in members) == sorted(cluster.control_planes)
    assert cluster.salt_run("kubeha_gate.final", CLUSTER, "wait=120", timeout=400)["result"]
    # The old data directories were kept aside, as the runner says; removed here so that
    # repeated runs do not pile them up on the lab's machines.
    for node in cluster.control_planes:
        cluster.sh(node, f"test -d {outcome['old_data']}", timeout=60)
        cluster.sh(
            node,
            f"rm -rf {outcome['old_data']}; rmdir /etc/kubernetes/kubeha-restore-{stamp}",
            timeout=60,
        )
    cluster.exec(
        "cp-1",
        *KUBECTL,
        "-n",
        "default",
        "delete",
        "configmap",
        stamp_name,
        check=False,
        timeout=60,
    )
