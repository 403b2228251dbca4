"""
Upgrade one node of a kubeha cluster to a Kubernetes version, and roll it back when it fails
its gate: what ``orch/upgrade.sls`` runs for each node, one at a time.

A control plane leaves every HAProxy's pool and hands over etcd leadership before anything
restarts on it (kubeadm's own upgrade stalls requests otherwise:
https://github.com/kubernetes/kubeadm/issues/2991); the VIP stays where it is (nothing of the
upgrade touches HAProxy or keepalived, and moving it would cut the connections in flight:
kubeha_upgrade_plan.CONTROL_PLANE_STEPS), then: the target minor's repository and
kubeadm; ``kubeadm upgrade apply`` on the first control plane, ``kubeadm upgrade node`` on
the others (docs/facts.md #2); its static pods at the new version and ready; cordon and
drain; kubelet and kubectl; Node Ready at the new version; uncordon; the cluster gate; back
into the pools. A worker: cordon and drain, kubeadm, ``kubeadm upgrade node``, kubelet and
kubectl, Ready, uncordon.

When a step fails, the node is put back on the version it ran (packages downgraded and held,
kubeadm's backup manifests restored if they had been replaced, kubelet restarted, gate), and
the step fails with what happened and what to run next. Every step's duration is recorded
for the upgrade report.

CLI Example:

.. code-block:: bash

    salt-run kubeha_upgrade_node.control_plane lab cp-2 1.31.0 first=True
    salt-run kubeha_upgrade_node.worker lab w-1 1.31.0
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

POLL_S = 2.0
VERSION_GRAIN = "kubeha_kubernetes_version"


class StepFailed(Exception):
    """A step of a node's upgrade did not reach its goal; the message says what was seen."""


class Timeline:
    """The steps of one node's pass with their start, end and outcome."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.steps: list[dict] = []

    @contextmanager
    def step(self, name: str):
        started = time.time()
        entry = {"node": self.node, "step": name, "started": started}
        self.steps.append(entry)
        try:
            yield entry
        except Exception as err:
            entry.update(ended=time.time(), ok=False, error=str(err)[:2000])
            raise
        entry.update(ended=time.time(), ok=True)
        log.info("kubeha upgrade: %s %s done in %.1fs", self.node, name, entry["ended"] - started)


def _ask(node: str, fun: str, *args, timeout: float = 60, **kwargs):
    ok, ret = __utils__["kubeha_minions.ask"](
        __opts__, node, fun, *args, timeout=timeout, **kwargs
    )[node]
    if not ok:
        raise StepFailed(f"{fun} on {node}: {ret}")
    return ret


def _until(what: str, check, wait: float):
    """check() until it returns something true; StepFailed naming `what` at the deadline.
    (A loop of its own in each runner: a check handed to a ``__utils__`` function would run
    in the utils loader's context, where this runner's ``__utils__`` is not packed.)"""
    deadline = time.monotonic() + float(wait)
    last = None
    while time.monotonic() < deadline:
        try:
            got = check()
        except StepFailed as err:
            got, last = None, err
        if got:
            return got
        time.sleep(POLL_S)
    tail = f" (last: {last})" if last else ""
    raise StepFailed(f"{what} not reached within {wait:g} s{tail}")


def _state(node: str, fun: str, *args, what: str, timeout: float, **kwargs) -> dict:
    """Run a state function on `node`; StepFailed with the first failing state's comment
    (Salt answers a failed state run with retcode 2 and the states, not an error text)."""
    ok, ret = __utils__["kubeha_minions.ask"](
        __opts__, node, fun, *args, timeout=timeout, **kwargs
    )[node]
    if isinstance(ret, dict):
        _states_ok(ret, f"{what} on {node}")
        return ret
    if not ok:
        raise StepFailed(f"{what} on {node}: {ret}")
    return ret


def _states_ok(ret, what: str) -> None:
    if not isinstance(ret, dict):
        raise StepFailed(f"{what}: {ret}")
    failed = [
        f"{v.get('__id__', k)}: {v.get('comment', '')}"
        for k, v in ret.items()
        if isinstance(v, dict) and not v.get("result")
    ]
    if failed:
        raise StepFailed(f"{what}: {failed[0]}")


def _v(text: str) -> str:
    return "v" + str(text).lstrip("v")


# --- the steps (most are kubeha_node's, an operator's tools too) -----------------------


def _node(fun: str, *args, **kwargs):
    """A kubeha_node step; its CommandExecutionError becomes this pass's StepFailed."""
    try:
        return __salt__[f"kubeha_node.{fun}"](*args, **kwargs)
    except CommandExecutionError as err:
        raise StepFailed(str(err)) from err


def _packages(node: str, versions: dict | None, what: str) -> None:
    pillar = {"kubeha": {"packages": {"versions": versions}}} if versions else None
    kwargs = {"pillar": pillar} if pillar else {}
    _state(node, "state.sls", "kubeha.packages", what=what, timeout=900, **kwargs)


def _upgrade_config(model: dict, node: str, version: str) -> str | None:
    """The formula's UpgradeConfiguration (v1beta4, kubeadm >= 1.31) when this hop is the
    pillar's upgrade target it was rendered for, else None (kubeadm's defaults)."""
    if str(model["upgrade"]["target_version"]).lstrip("v") != str(version).lstrip("v"):
        return None
    path = f"{model['kubeadm']['config_dir']}/upgrade-config.yaml"
    return path if _ask(node, "file.file_exists", path, timeout=30) else None


def _sync_cluster_configuration(model: dict, node: str) -> None:
    """Re-render this node's kubeadm config from pillar and upload its ClusterConfiguration
    to the kubeadm-config ConfigMap (``kubeadm init phase upload-config kubeadm``)."""
    _state(node, "state.sls", "kubeha.kubeadm.config", what="kubeadm config", timeout=300)
    _ask(node, "kubeadm.upload_config", f"{model['kubeadm']['config_dir']}/kubeadm-config.yaml",
         timeout=120)  # fmt: skip


# --- passes ---------------------------------------------------------------------------


def _outcome(cluster, node, version, timeline, *, rolled_back=None, error=None) -> dict:
    took = sum(s["ended"] - s["started"] for s in timeline.steps if "ended" in s)
    ret = {
        "cluster": cluster,
        "node": node,
        "version": version,
        "ok": error is None,
        "rolled_back_to": rolled_back,
        "steps": timeline.steps,
        "seconds": round(took, 1),
    }
    __salt__["kubeha_upgrade_run.record"](ret)
    if error is None:
        return {"result": True, "comment": f"{node} runs {_v(version)} ({took:.0f} s)", **ret}
    text = f"upgrade of {node} to {_v(version)} stopped: {error}. "
    if rolled_back:
        text += (
            f"{node} was rolled back to {rolled_back} and serves again; the cluster keeps "
            "serving. Find the cause (kubeadm's output above, journalctl -u kubelet on "
            f"{node}), fix it, then run the same `salt-run state.orch orch.upgrade` again: "
            "nodes already upgraded are skipped."
        )
    else:
        text += (
            f"rolling {node} back failed too: look at it now (journalctl -u kubelet, crictl "
            "ps -a); the other control planes keep serving."
        )
    return {"result": False, "retcode": 1, "Error": text, "comment": text, **ret}


def _current(node: str, control_plane: bool) -> str | None:
    if control_plane:
        return _ask(node, "kubeadm_upgrade.node_version", timeout=30)
    return _ask(node, "grains.get", VERSION_GRAIN, timeout=30) or None


def _kubelet_ready_uncordoned(cluster, node, version, *, timeline, reached, helper, wait):
    """The last steps of every node's pass: the version grain, kubelet and kubectl at the
    new version, kubelet restarted, Node Ready at the new version, uncordoned."""
    with timeline.step("kubelet-kubectl"):
        _ask(node, "grains.setval", VERSION_GRAIN, str(version).lstrip("v"))
        reached.append("grain")
        _packages(node, None, "kubelet and kubectl packages")
        _ask(node, "service.restart", "kubelet", timeout=120)
    with timeline.step("node-ready"):
        _until(f"Node {node} Ready at {_v(version)}",
               lambda: _node("ready_at", cluster, node, version, via=helper), wait)  # fmt: skip
    with timeline.step("uncordon"):
        _node("uncordon", cluster, node, via=helper)


def control_plane(cluster: str, node: str, version: str, first: bool = False, wait=300):
    """
    Upgrade control plane ``node`` to ``version`` (``first``: ``kubeadm upgrade apply``,
    else ``kubeadm upgrade node``), rolling it back if a step fails.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade_node.control_plane lab cp-2 1.31.0 first=True
    """
    model = __salt__["kubeha.model"](cluster)
    cps = [n["name"] for n in model["control_plane"]]
    timeline = Timeline(node)
    old = _current(node, True)
    if old == _v(version):
        timeline.steps.append({"node": node, "step": "already", "started": time.time()})
        return {"result": True, "comment": f"{node} already runs {old}", "steps": []}
    helper = next(n for n in cps if n != node)
    reached = []
    try:
        with timeline.step("lb-drain"):
            _node("lb_out", cluster, node)
        with timeline.step("etcd-leader-away"):
            _node("etcd_leader_away", cluster, node)
        revision = model["kubernetes"]["package_revision"]
        with timeline.step("kubeadm-package"):
            _packages(node, {"kubeadm": f"{version}-{revision}"}, "kubeadm package")
        reached.append("kubeadm-package")
        with timeline.step("kubeadm-upgrade"):
            if first:
                # kubeadm upgrade apply reads the cluster's ClusterConfiguration from the
                # kubeadm-config ConfigMap: bring it in line with pillar first, so a flag
                # removed from pillar is gone from the new static pods too.
                _sync_cluster_configuration(model, node)
            _state(
                node, "state.single", "kubeadm.upgraded", _v(version), first=bool(first),
                config=_upgrade_config(model, node, version), what="kubeadm upgrade",
                timeout=1900,
            )  # fmt: skip
        reached.append("kubeadm-upgrade")
        with timeline.step("static-pods"):
            # kubeadm counts a crash-looping pod as Running (WaitForPodsWithLabel wants
            # phase Running only), so a new apiserver that exits on start passes kubeadm:
            # kubeha waits for it to be ready, as long as kubeadm waits for its pods.
            ready_wait = __utils__["kubeha_values.go_seconds"](model["upgrade"]["kubeadm_timeout"])
            _until(
                f"{node}'s control plane at {_v(version)} and ready",
                lambda: _node("control_plane_at", cluster, node, version),
                ready_wait,
            )
        with timeline.step("cordon-drain"):
            _node("drain", cluster, node, via=helper)
        _kubelet_ready_uncordoned(
            cluster, node, version, timeline=timeline, reached=reached, helper=helper, wait=wait
        )
        with timeline.step("gate"):
            gate = __salt__["kubeha_gate.control_plane_ready"](cluster, cps, wait=wait)
            if not gate.get("result"):
                raise StepFailed(gate.get("comment"))
        with timeline.step("lb-back"):
            _node("lb_in", cluster, node)
    except Exception as err:  # noqa: BLE001 - whatever stopped the pass, the node goes back
        log.exception("kubeha upgrade: %s failed: %s; rolling back to %s", node, err, old)
        back = _roll_back(
            model,
            cluster,
            node,
            old=old,
            reached=reached,
            timeline=timeline,
            helper=helper,
            wait=wait,
        )
        return _outcome(
            cluster, node, version, timeline, rolled_back=old if back else None, error=err
        )
    return _outcome(cluster, node, version, timeline)


def worker(cluster: str, node: str, version: str, wait=300):
    """
    Upgrade worker ``node`` to ``version``: cordon and drain (PodDisruptionBudgets honoured,
    bounded by ``upgrade:drain_timeout``), kubeadm, ``kubeadm upgrade node``, kubelet and
    kubectl, Ready, uncordon; rolled back if a step fails.

    CLI Example:

    .. code-block:: bash

        salt-run kubeha_upgrade_node.worker lab w-1 1.31.0
    """
    model = __salt__["kubeha.model"](cluster)
    helper = model["derived"]["init_node"]
    timeline = Timeline(node)
    old = _current(node, False) or model["kubernetes"]["version"]
    if _v(old) == _v(version):
        return {"result": True, "comment": f"{node} already runs {_v(old)}", "steps": []}
    reached = []
    revision = model["kubernetes"]["package_revision"]
    try:
        with timeline.step("cordon-drain"):
            _node("drain", cluster, node, via=helper)
        with timeline.step("kubeadm-package"):
            _packages(node, {"kubeadm": f"{version}-{revision}"}, "kubeadm package")
        reached.append("kubeadm-package")
        with timeline.step("kubeadm-upgrade"):
            _state(node, "state.single", "kubeadm.upgraded", _v(version),
                   what="kubeadm upgrade node", timeout=1900)  # fmt: skip
        _kubelet_ready_uncordoned(
            cluster, node, version, timeline=timeline, reached=reached, helper=helper, wait=wait
        )
    except Exception as err:  # noqa: BLE001 - whatever stopped the pass, the node goes back
        log.exception("kubeha upgrade: %s failed: %s; rolling back to %s", node, err, old)
        back = _roll_back(
            model,
            cluster,
            node,
            old=_v(old),
            reached=reached,
            timeline=timeline,
            helper=helper,
            wait=wait,
        )
        return _outcome(
            cluster, node, version, timeline, rolled_back=_v(old) if back else None, error=err
        )
    return _outcome(cluster, node, version, timeline)


def _roll_back(model, cluster, node, *, old, reached, timeline, helper, wait) -> bool:
    """Put `node` back on `old` (runbook step 13). True when it serves again."""
    control_plane = node in [n["name"] for n in model["control_plane"]]
    try:
        with timeline.step("rollback-manifests"):
            if control_plane and _current(node, True) != old:
                _ask(node, "kubeadm_upgrade.restore_manifests", timeout=120)
        with timeline.step("rollback-packages"):
            if "grain" in reached:
                _ask(node, "grains.setval", VERSION_GRAIN, old.lstrip("v"))
            if reached:
                _packages(node, None, "packages back to the old version")
            _ask(node, "service.restart", "kubelet", timeout=120)
        if control_plane:
            cps = [n["name"] for n in model["control_plane"]]
            with timeline.step("rollback-static-pods"):
                _until(f"{node}'s control plane back at {old} and ready",
                       lambda: _node("control_plane_at", cluster, node, old), wait)  # fmt: skip
            with timeline.step("rollback-gate"):
                _node("uncordon", cluster, node, via=helper)
                gate = __salt__["kubeha_gate.control_plane_ready"](cluster, cps, wait=wait)
                if not gate.get("result"):
                    raise StepFailed(gate.get("comment"))
                _node("lb_in", cluster, node)
        else:
            with timeline.step("rollback-node-ready"):
                _until(f"Node {node} Ready at {old}",
                       lambda: _node("ready_at", cluster, node, old, via=helper), wait)  # fmt: skip
                _node("uncordon", cluster, node, via=helper)
    except Exception as err:  # noqa: BLE001 - reported as "rolling back failed too"
        log.exception("kubeha upgrade: rolling %s back failed: %s", node, err)
        return False
    return True
