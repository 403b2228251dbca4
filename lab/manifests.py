"""Flags of a control plane's static pods, edited in place on a lab node: what `kubeadm
upgrade` would render from a changed ClusterConfiguration, one node at a time, for
measurements and tests that compare configurations on one built cluster (`make chaos`'s
timer profiles, the OIDC end-to-end test). The kubelet replaces a pod whose manifest changed.
"""

from __future__ import annotations

import time

import yaml

from lab.api import Lab
from lab.run import LabError

MANIFESTS = "/etc/kubernetes/manifests"


def set_flags(
    lab: Lab, node: str, component: str, flags: dict[str, str], drop: tuple[str, ...] = ()
) -> bool:
    """Set ``--name=value`` flags (and remove the ``drop`` ones) in a static pod manifest;
    True when it changed (the kubelet then replaces the pod)."""
    path = f"{MANIFESTS}/{component}.yaml"
    doc = yaml.safe_load(lab.exec(node, "cat", path).stdout)
    container = doc["spec"]["containers"][0]
    command = list(container["command"])
    for name in (*flags, *drop):
        command = [c for c in command if not c.startswith(f"--{name}=")]
    command += [f"--{name}={value}" for name, value in flags.items()]
    command = command[:1] + sorted(command[1:])
    if command == container["command"]:
        return False
    container["command"] = command
    # Written beside the manifests dir, then moved in: the kubelet reads every file there.
    tmp = "/etc/kubernetes/.kubeha-chaos.yaml"
    lab.sh(node, f"cat > {tmp} && mv {tmp} {path}", input=yaml.safe_dump(doc, sort_keys=False))
    return True


def wait_readyz(lab: Lab, node: str, timeout: float = 180) -> None:
    """Until the node's kube-apiserver answers /readyz after its manifest changed."""
    url = f"https://{lab.ip(node)}:6443"
    deadline = time.monotonic() + timeout
    time.sleep(3)  # the kubelet first stops the old pod
    while time.monotonic() < deadline:
        ret = lab.salt(node, "apiserver.readyz", f"server={url}", timeout=60).get(node)
        if isinstance(ret, dict) and ret.get("ok"):
            return
        time.sleep(2)
    raise LabError(f"kube-apiserver on {node} not ready {timeout:g} s after its manifest changed")
