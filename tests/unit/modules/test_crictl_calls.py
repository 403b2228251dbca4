"""crictl's public functions, and kubeadm_certs.restart_static_pods on top of them, with
``cmd.run_all`` answering as crictl does over a node whose kubelet restarts a stopped static
pod container.

Output shapes are cri-tools' (cmd/crictl): ``ps``/``pods -o json`` are the CRI list
responses as protojson (camelCase, int64 as strings: util.go protobufObjectToJSON),
``inspect -o json`` is {"status", "info"} with RFC 3339 times (container.go
marshalContainerStatus), ``stop`` prints the ID; failures are logrus fatal lines on stderr.
The records start from samples/crictl_ps.json (IDs illustrative, names a kubeadm node's).
"""

import copy
import json
from pathlib import Path
from unittest.mock import patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_cmd import fails, ok
from tests.unit.modules.khm_load import all_utils, load

crictl = load("_modules", "crictl")
kubeadm_certs = load("_modules", "kubeadm_certs")
SAMPLES = Path(__file__).parent / "samples"
SETTINGS: dict = {}
RUNTIME_DOWN = (
    'time="2024-07-02T15:02:11Z" level=fatal msg="validate service connection: validate CRI v1 '
    'runtime API for endpoint \\"unix:///run/containerd/containerd.sock\\": rpc error: code = '
    'Unavailable desc = connection error: desc = \\"transport: Error while dialing: dial unix '
    '/run/containerd/containerd.sock: connect: no such file or directory\\""\n'
)


class Node:
    """Containers of one node as crictl reports them. A stopped static pod container is
    replaced by the kubelet with a new one (attempt + 1) after ``restart_after`` more
    ``crictl ps`` calls (FACTS 7)."""

    def __init__(self, restart_after: int = 0):
        self.containers = json.loads((SAMPLES / "crictl_ps.json").read_text())["containers"]
        self.pods = json.loads((SAMPLES / "crictl_pods.json").read_text())["items"]
        self.restart_after = restart_after
        self.pending: list[tuple[int, dict]] = []
        self.calls: list[list[str]] = []
        self.serial = 0

    def __call__(self, cmd, **kw):
        self.calls.append(list(cmd))
        args = cmd[3:] if cmd[1] == "--runtime-endpoint" else cmd[1:]
        if args[0] == "ps":
            return self._ps("-a" in args)
        if args[0] == "pods":
            return ok(json.dumps({"items": self.pods}, indent=2))
        if args[0] == "inspect":
            return self._inspect(args[-1])
        if args[0] == "stop":
            return self._stop(args[-1])
        raise AssertionError(f"unexpected crictl call {cmd}")

    def _ps(self, show_all: bool) -> dict:
        due = [(n - 1, c) for n, c in self.pending]
        self.pending = [(n, c) for n, c in due if n > 0]
        self.containers += [c for n, c in due if n <= 0]
        listed = [c for c in self.containers if show_all or c["state"] == "CONTAINER_RUNNING"]
        return ok(json.dumps({"containers": listed}, indent=2))

    def _find(self, cid: str) -> dict | None:
        return next((c for c in self.containers if c["id"] == cid), None)

    def _inspect(self, cid: str) -> dict:
        found = self._find(cid)
        if found is None:
            return fails(f'time="x" level=fatal msg="getting the status of the container {cid}"')
        status = json.loads((SAMPLES / "crictl_inspect.json").read_text())
        status["status"].update(id=cid, metadata=found["metadata"], state=found["state"])
        return ok(json.dumps(status, indent=2))

    def _stop(self, cid: str) -> dict:
        found = self._find(cid)
        if found is None:
            return fails(f'time="x" level=fatal msg="stopping the container \\"{cid}\\""')
        found["state"] = "CONTAINER_EXITED"
        self.serial += 1
        fresh = copy.deepcopy(found)
        fresh["id"] = f"{self.serial:02d}" + found["id"][2:]
        fresh["metadata"]["attempt"] = found["metadata"]["attempt"] + 1
        fresh["createdAt"] = str(int(found["createdAt"]) + 10**9)
        fresh["state"] = "CONTAINER_RUNNING"
        self.pending.append((self.restart_after, fresh))
        return ok(cid + "\n")


class Clock:
    """time for crictl's wait loop: sleep advances it at once."""

    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def configure_loader_modules():
    SETTINGS.clear()
    return {
        crictl: {"__salt__": {"config.get": lambda key, default=None: SETTINGS.get(key, default)}},
        kubeadm_certs: {
            "__salt__": {
                "crictl.ps": crictl.ps,
                "crictl.stop": crictl.stop,
                "crictl.wait_restarted": crictl.wait_restarted,
            },
            "__utils__": all_utils(),
        },
    }


@pytest.fixture
def node(monkeypatch):
    fake = Node()
    monkeypatch.setattr(crictl, "time", Clock())
    with patch.dict(crictl.__salt__, {"cmd.run_all": fake}):
        yield fake


APISERVER = "4d5a0ed6f1fd5d5e9b3c0b6b0f1a2bd4f1f0e6f9ad3f1c2e3b4a5d6c7e8f9a0b"
ETCD = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f4f2a9c8e1b3d7a6f5e4d3c2b1a0f"


def test_pods_filtered_by_name_and_namespace(node):
    (pod,) = crictl.pods(namespace="kube-system")
    assert pod["name"] == "kube-apiserver-cp-1" and pod["state"] == "READY"
    assert pod["uid"] == "0a2b1c8e5f6d4b3a9c7e8f1d2b3a4c5d"
    assert crictl.pods(name="kube-apiserver-cp-1", namespace="default") == []
    assert crictl.pods(name="etcd-cp-1") == []
    assert node.calls[0] == ["crictl", "pods", "-o", "json"]


def test_the_runtime_endpoint_setting_goes_first(node):
    SETTINGS["crictl"] = {"runtime_endpoint": "unix:///run/containerd/containerd.sock"}
    crictl.pods()
    assert node.calls[-1] == [
        "crictl", "--runtime-endpoint", "unix:///run/containerd/containerd.sock",
        "pods", "-o", "json",
    ]  # fmt: skip


def test_container_id_by_name_newest_first_or_by_unique_prefix(node):
    assert crictl.container_id("kube-apiserver") == APISERVER
    assert crictl.container_id("9e8d7c") == ETCD  # an ID prefix, as crictl accepts
    assert crictl.container_id("nope") is None
    twin = copy.deepcopy(node.containers[0])  # a second, newer apiserver container
    twin["id"], twin["createdAt"] = "4d5a" + "0" * 60, str(int(twin["createdAt"]) + 1)
    node.containers.append(twin)
    assert crictl.container_id("kube-apiserver") == twin["id"]
    assert crictl.container_id("4d5a") is None  # ambiguous prefix: no guess


def test_inspect_resolves_the_name_then_reads_the_status(node):
    info = crictl.inspect("kube-apiserver")
    assert node.calls[-1] == ["crictl", "inspect", "-o", "json", APISERVER]
    assert info["id"] == APISERVER and info["name"] == "kube-apiserver"
    assert info["state"] == "RUNNING" and info["attempt"] == 2 and info["pid"] == 4242
    assert info["started_at"] == "2024-07-02T14:45:00.912345678Z"
    assert info["finished_at"] == "0001-01-01T00:00:00Z"  # Go's zero time: still running


def test_stop_by_name_or_id(node):
    assert crictl.stop("etcd", timeout=5) == {"stopped": [ETCD]}
    assert node.calls[-1] == ["crictl", "stop", "--timeout", "5", ETCD]
    fresh = crictl.ps(name="etcd")
    assert [c["attempt"] for c in fresh] == [1] and fresh[0]["id"] != ETCD
    assert crictl.stop(APISERVER[:12]) == {"stopped": [APISERVER]}
    with pytest.raises(CommandExecutionError, match="no running container named or with ID"):
        crictl.stop("kube-scheduler")


def test_wait_restarted_returns_the_new_container_after_the_kubelet_starts_it(node):
    node.restart_after = 3
    crictl.stop("etcd")
    got = crictl.wait_restarted("etcd", [ETCD], timeout=30)
    assert got["id"] != ETCD and got["attempt"] == 1 and got["state"] == "RUNNING"
    # found on the third look, one second apart
    assert got["waited_s"] == 2.0 and crictl.time.slept == [1, 1]


def test_wait_restarted_gives_up_after_its_timeout(node):
    node.restart_after = 100
    crictl.stop("etcd")
    with pytest.raises(CommandExecutionError, match="etcd did not come back within 5s"):
        crictl.wait_restarted("etcd", ETCD, timeout=5)
    assert crictl.time.now - 1000.0 == 5.0


def test_a_runtime_that_is_down_is_named(node):
    with (
        patch.dict(crictl.__salt__, {"cmd.run_all": lambda cmd, **kw: fails(RUNTIME_DOWN)}),
        pytest.raises(CommandExecutionError) as err,
    ):
        crictl.ps()
    assert str(err.value).startswith('crictl ps failed: time="2024-07-02T15:02:11Z" level=fatal')
    assert "validate service connection" in str(err.value)


def test_restart_static_pods_bounces_each_running_component(node):
    node.restart_after = 1
    done = kubeadm_certs.restart_static_pods(["kube-apiserver", "kube-scheduler", "etcd"])
    assert [d["name"] for d in done] == ["kube-apiserver", "etcd"]  # no scheduler here
    assert done[0]["old"] == [APISERVER] and done[0]["new"] != APISERVER
    assert done[1]["old"] == [ETCD] and done[1]["new"] != ETCD
    stops = [c for c in node.calls if "stop" in c]
    assert [c[-1] for c in stops] == [APISERVER, ETCD]  # one at a time, in the given order
    running = {c["name"]: c["attempt"] for c in crictl.ps()}
    assert running == {"kube-apiserver": 3, "etcd": 1}
