"""A kubelet killed while starting a container (kubeadm's `systemctl restart kubelet`
racing systemd's restart of the crash-looping one, seen on the lab: etcd's first process
kept running unknown to the runtime, and every later attempt failed on its port) leaves a
CREATED record. The next kubelet resolves it as containerd would know it: the process
adopted, or the record of a container that never ran removed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kubesim import cri
from kubesim.kubelet.pods import Pod, PodRuntime

UID = "0eb9c11b468949dc866434e3e18c8eda"


def _record(records: cri.Records, log: Path, age_s: float) -> cri.Container:
    c = cri.Container(
        id=cri.new_id(),
        pod_sandbox_id="sb",
        name="etcd",
        attempt=0,
        image="registry.k8s.io/etcd:3.5.12-0",
        command=["etcd"],
        labels={"io.kubernetes.pod.uid": UID, "io.kubernetes.container.name": "etcd"},
        annotations={},
        log_path=str(log),
        created_at=time.time_ns() - int(age_s * 1e9),
    )
    records.save_container(c)
    return c


@pytest.fixture
def started(tmp_path):
    """A process whose stdout is the container's log file, as launch.start makes it; it
    forks, so the one to adopt is the topmost."""
    log = tmp_path / "logs" / "0.log"
    log.parent.mkdir()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["sh", "-c", "sleep 30 & exec sleep 30"], stdout=out, start_new_session=True
        )
    time.sleep(0.2)
    yield proc, log
    os.killpg(proc.pid, signal.SIGKILL)  # the forked sleep too
    proc.wait()


def test_a_started_process_is_adopted_as_running(tmp_path, started):
    proc, log = started
    records = cri.Records(tmp_path / "cri")
    left = _record(records, log, age_s=0)  # the next kubelet can come within a second
    runtime = PodRuntime(records, "198.18.0.11")
    pod = Pod(UID, "etcd-cp-1", "kube-system", {}, {}, True)
    current = runtime.latest(pod, "etcd")
    assert current is not None and current.id == left.id
    assert current.state == cri.RUNNING and current.pid == proc.pid and current.alive()
    (saved,) = records.containers()
    assert saved.state == cri.RUNNING and saved.pid == proc.pid


def test_a_container_that_never_ran_is_forgotten(tmp_path):
    records = cri.Records(tmp_path / "cri")
    _record(records, tmp_path / "logs" / "0.log", age_s=0)
    runtime = PodRuntime(records, "198.18.0.11")
    assert runtime.latest(Pod(UID, "etcd-cp-1", "kube-system", {}, {}, True), "etcd") is None
    assert records.containers() == []


def test_a_start_still_under_way_is_left_alone(tmp_path):
    """By this kubelet (its own start in flight), or by another process (crictl) within the
    grace."""
    records = cri.Records(tmp_path / "cri")
    young = _record(records, tmp_path / "logs" / "0.log", age_s=0)
    runtime = PodRuntime(records, "198.18.0.11")
    runtime.starting.add(young.id)
    current = runtime.latest(Pod(UID, "etcd-cp-1", "kube-system", {}, {}, True), "etcd")
    assert current is not None and current.state == cri.CREATED
    assert records.recover(young) is young
    (saved,) = records.containers()
    assert saved.state == cri.CREATED


def test_the_writer_of_a_log_is_found_by_its_stdout_only(tmp_path, started):
    proc, log = started
    assert cri.pid_writing_to(str(log)) == proc.pid
    assert cri.pid_writing_to(str(tmp_path / "other.log")) == 0
