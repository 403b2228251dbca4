"""Control-plane command lines are parsed as cobra/pflag parse them, per component and version.

Upstream (component-base/cli/run.go, spf13/pflag flag.go): a flag the binary does not define
ends it at once with `Error: unknown flag: --x` and exit status 1, before it serves
anything; kubesim/flagsets.py holds what each component defines in 1.28-1.31. Every flag
kubeadm writes into the manifests (kubesim's kubeadm, phases/controlplane/manifests.go) and
every extraArg the formula renders (_modules/kubeha_kubeadm_config.py) must be accepted,
or the cluster would not build.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubesim import component, flagsets
from kubesim.kubeadm import manifests
from kubesim.kubeadm.config import parse_documents
from kubesim.kubelet.status import phase
from kubesim.versions import Version

REPO = Path(__file__).resolve().parents[3]
KUBESIM = REPO / "lab" / "kubesim"
VERSIONS = ["v1.28.15", "v1.29.15", "v1.30.0", "v1.31.0"]
COMPONENTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]


def run_component(name: str, version: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(KUBESIM), KUBESIM_IMAGE_VERSION=version)
    return subprocess.run(
        [sys.executable, "-m", "kubesim.component", name, name, *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("name", COMPONENTS)
def test_an_unknown_flag_ends_the_component_with_pflags_error(name):
    res = run_component(name, "v1.30.0", "--v=2", "--no-such-flag=1")
    assert res.returncode == 1
    assert res.stderr.rstrip().endswith("Error: unknown flag: --no-such-flag"), res.stderr
    assert f"Usage:\n  {name} [flags]" in res.stderr
    assert "Serving securely" not in res.stderr  # it stopped before anything else


def test_flag_errors_use_pflags_texts(capsys):
    v = Version.parse("v1.30.0")
    cases = {
        ("--secure-port",): "Error: flag needs an argument: --secure-port",
        ("-x",): "Error: unknown shorthand flag: 'x' in -x",
        ("--allow-privileged=maybe",): 'Error: invalid argument "maybe" for "--allow-privileged"',
        ("stray",): 'Error: "kube-apiserver" does not take any arguments, got ["stray"]',
    }
    for argv, message in cases.items():
        with pytest.raises(SystemExit) as exited:
            component.parse("kube-apiserver", v, list(argv))
        assert exited.value.code == 1
        assert message in capsys.readouterr().err
    flags = component.parse("kube-apiserver", v, ["--allow-privileged", "-v=2", "--v", "3"])
    assert flags == {"allow-privileged": "true", "v": "3"}  # last one wins, like pflag


def test_a_flag_removed_in_130_fails_the_newer_component_only(capsys):
    """--azure-container-registry-config left with the in-tree Azure credential provider in
    1.30 (kubernetes PR 122857): the same manifest that runs 1.29 crash-loops 1.30."""
    flag = ["--azure-container-registry-config=/etc/kubernetes/azure.json"]
    for name in COMPONENTS:
        assert component.parse(name, Version.parse("v1.29.15"), flag)
        with pytest.raises(SystemExit):
            component.parse(name, Version.parse("v1.30.0"), flag)
        assert "Error: unknown flag: --azure-container-registry-config" in capsys.readouterr().err
    assert component.parse("kube-apiserver", Version.parse("v1.31.0"), ["--emulated-version=1.31"])
    with pytest.raises(SystemExit):
        component.parse("kube-apiserver", Version.parse("v1.30.0"), ["--emulated-version=1.30"])


def _formula_args() -> tuple[dict, dict]:
    """The extraArgs the formula renders for the apiserver (audit and OIDC on) and for
    kube-controller-manager / kube-scheduler (leader election)."""
    path = REPO / "_modules" / "kubeha_kubeadm_config.py"
    spec = importlib.util.spec_from_file_location("kubesim_test_kubeadm_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults = yaml.safe_load((REPO / "salt/kubeha/parameters/defaults.yaml").read_text())
    model = defaults["values"]
    model["apiserver"]["oidc"].update(issuer_url="https://issuer.example", client_id="k8s")
    model["apiserver"]["oidc"]["ca_file"] = "/etc/kubernetes/pki/oidc-ca.crt"
    return module.apiserver_args(model), module._leader_args(model)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_flag_kubeadm_and_the_formula_pass_is_accepted(version):
    api_args, leader_args = _formula_args()
    v = Version.parse(version)

    def block(args: dict) -> str:
        return "\n".join(f"    {k}: '{val}'" for k, val in args.items())

    text = f"""apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint: {{advertiseAddress: 198.18.0.11, bindPort: 6443}}
nodeRegistration: {{name: cp-1}}
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: {version}
controlPlaneEndpoint: 198.18.0.10:8443
networking: {{podSubnet: 10.244.0.0/16}}
apiServer:
  extraArgs:
{block(api_args)}
controllerManager:
  extraArgs:
{block(leader_args)}
scheduler:
  extraArgs:
{block(leader_args)}
"""
    cfg = parse_documents(text, Version.parse("v1.30.0"))
    for name, pod in manifests.control_plane(cfg, v).items():
        command = pod["spec"]["containers"][0]["command"]
        flags = component.parse(name, v, command[1:])
        assert "audit-policy-file" in flags or name != "kube-apiserver"
        assert "oidc-issuer-url" in flags or name != "kube-apiserver"
        assert "leader-elect-renew-deadline" in flags or name == "kube-apiserver"
    known, _ = flagsets.accepted("kube-apiserver", v)
    assert {"etcd-readycheck-timeout", "shutdown-watch-termination-grace-period"} <= known


def test_a_crash_looping_pod_is_running_as_the_kubelet_reports_it():
    """kubelet_pods.go getPhase: a container waiting to restart after it exited counts as
    stopped; under restartPolicy Always the pod is Running (what kubeadm's
    WaitForPodsWithLabel accepts); a pod whose containers all succeeded under Never is
    Succeeded, one that failed is Failed; a container not yet started keeps it Pending."""
    counts = dict.fromkeys(("running", "stopped", "succeeded", "waiting", "unknown"), 0)
    assert phase("Always", {**counts, "stopped": 1}) == "Running"
    assert phase("Never", {**counts, "stopped": 1, "succeeded": 1}) == "Succeeded"
    assert phase("Never", {**counts, "stopped": 1}) == "Failed"
    assert phase("OnFailure", {**counts, "stopped": 1}) == "Running"
    assert phase("Always", {**counts, "waiting": 1}) == "Pending"
