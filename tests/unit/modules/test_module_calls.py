"""How often and how modules call their tools: one member list for etcdctl.leader, one
``show stat`` for haproxy_runtime.servers, and the JoinConfiguration's TLS token."""

import json
from pathlib import Path
from unittest.mock import patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load, utils

etcdctl = load("_modules", "etcdctl")
haproxy = load("_modules", "haproxy_runtime")
kubeadm_join = load("_modules", "kubeadm_join")
SAMPLES = Path(__file__).parent / "samples"
IDS = {"m1": 0x8211F1D0F64F3269, "m2": 0x91BC3C398FB3C146, "m3": 0xFD422379FDA50E48}
URLS = {"m1": "https://127.0.0.11:2379", "m2": "https://127.0.0.12:2379",
        "m3": "https://127.0.0.13:2379"}  # fmt: skip


class Etcdctl:
    """cmd.run_all stand-in answering like etcdctl 3.5 -w json; m2 leads, m3 may be down."""

    def __init__(self, down=()):
        self.down = set(down)
        self.lead = "m2"
        self.dropped = 0  # MoveLeader calls whose transfer raft drops (the call times out)
        self.calls: list[list[str]] = []
        self.asked: list[list[str]] = []  # the endpoints of each call

    def __call__(self, cmd, **kw):
        args = [a for a in cmd[1:] if not a.startswith("--")]
        endpoints = next(a for a in cmd if a.startswith("--endpoints=")).split("=", 1)[1]
        self.calls.append(args)
        targets = endpoints.split(",")
        self.asked.append(targets)
        if args[:2] == ["member", "list"]:
            members = [{"ID": IDS[n], "name": n, "peerURLs": [], "clientURLs": [URLS[n]]}
                       for n in IDS]  # fmt: skip
            return self._ok({"members": members})
        name = {u: n for n, u in URLS.items()}
        up = [t for t in targets if name[t] not in self.down]
        err = "".join(
            f"Failed to get the status of endpoint {t} (context deadline exceeded)\n"
            for t in targets
            if t not in up
        )
        if args[:2] == ["endpoint", "status"]:
            out = [{"Endpoint": t, "Status": {"header": {"member_id": IDS[name[t]]},
                    "leader": IDS[self.lead], "dbSize": 4096, "dbSizeInUse": 2048,
                    "version": "3.5.1", "raftTerm": 2, "raftIndex": 9}} for t in up]  # fmt: skip
            return {"retcode": 1 if err else 0, "stdout": json.dumps(out), "stderr": err}
        if args[:2] == ["endpoint", "health"]:
            out = [{"endpoint": t, "health": name[t] not in self.down} for t in targets]
            return {"retcode": 1 if err else 0, "stdout": json.dumps(out), "stderr": ""}
        if args == ["defrag"]:
            return self._ok("")
        if args[0] == "move-leader":
            if targets != [URLS[self.lead]]:  # etcdserver answers ErrNotLeader elsewhere
                return {"retcode": 1, "stdout": "", "stderr": "etcdserver: not leader"}
            if self.dropped:
                self.dropped -= 1
                return {"retcode": 1, "stdout": "",
                        "stderr": "Error: context deadline exceeded"}  # fmt: skip
            self.lead = next(n for n, i in IDS.items() if f"{i:x}" == args[1])
            return self._ok(f"Leadership transferred from {IDS['m2']:x} to {args[1]}")
        raise AssertionError(f"unexpected etcdctl call {args}")

    @staticmethod
    def _ok(payload):
        out = payload if isinstance(payload, str) else json.dumps(payload)
        return {"retcode": 0, "stdout": out, "stderr": ""}


@pytest.fixture
def configure_loader_modules():
    config = {"config.get": lambda key, default=None: {}}
    return {
        etcdctl: {
            "__salt__": dict(config),
            "__utils__": utils(
                "etcdctl_cli", "etcdctl_parse", "etcdctl_defrag", "etcdctl_move", "etcdctl_watch"
            ),
        },
        haproxy: {"__salt__": dict(config)},
        kubeadm_join: {"__salt__": {}},
    }


def test_leader_lists_the_members_once():
    fake = Etcdctl()
    with patch.dict(etcdctl.__salt__, {"cmd.run_all": fake}):
        lead = etcdctl.leader()
    assert lead == {"id": f"{IDS['m2']:x}", "name": "m2", "endpoint": URLS["m2"]}
    assert [c[:2] for c in fake.calls] == [["member", "list"], ["endpoint", "status"]]


def test_move_leader_crosses_to_the_leader_once():
    """Asked of the target (m1), the move reads the leader from m1's own status and sends
    only MoveLeader to the leader: on a leader behind a slow link nothing else waits on it."""
    fake = Etcdctl()
    with patch.dict(etcdctl.__salt__, {"cmd.run_all": fake}):
        ret = etcdctl.move_leader("m1", endpoints=URLS["m1"])
        again = etcdctl.move_leader("m1", endpoints=URLS["m1"])
    assert ret["changed"] is True and ret["leader"]["name"] == "m1", ret
    assert again["changed"] is False
    moves = [i for i, c in enumerate(fake.calls) if c[0] == "move-leader"]
    assert moves == [2] and fake.asked[2] == [URLS["m2"]], fake.calls
    assert all(a == [URLS["m1"]] for i, a in enumerate(fake.asked) if i != 2), fake.asked


def test_a_dropped_transfer_is_asked_again_up_to_the_attempts():
    fake = Etcdctl()
    fake.dropped = 2
    with patch.dict(etcdctl.__salt__, {"cmd.run_all": fake}):
        ret = etcdctl.move_leader("m1", endpoints=URLS["m1"], command_timeout="3s", attempts=3)
    assert ret["changed"] is True and ret["leader"]["name"] == "m1"
    assert len(ret["failed_attempts"]) == 2
    assert all(f.endswith("context deadline exceeded") for f in ret["failed_attempts"])
    assert sum(c[0] == "move-leader" for c in fake.calls) == 3
    fake = Etcdctl()
    fake.dropped = 5
    gave_up = pytest.raises(CommandExecutionError, match="did not move to m1 in 2 attempt")
    with patch.dict(etcdctl.__salt__, {"cmd.run_all": fake}), gave_up:
        etcdctl.move_leader("m1", endpoints=URLS["m1"], attempts=2)
    assert fake.lead == "m2"


class NotLeader(Etcdctl):
    """Every MoveLeader lands on a member that no longer leads."""

    def __call__(self, cmd, **kw):
        if "move-leader" in cmd:
            self.calls.append(["move-leader"])
            return {"retcode": 1, "stdout": "", "stderr": "Error: etcdserver: not leader"}
        return super().__call__(cmd, **kw)


def test_a_move_refused_for_another_reason_is_not_asked_again():
    fake = NotLeader()
    refused = pytest.raises(CommandExecutionError, match="not leader")
    with patch.dict(etcdctl.__salt__, {"cmd.run_all": fake}), refused:
        etcdctl.move_leader("m1", endpoints=URLS["m1"], attempts=4)
    assert sum(c[0] == "move-leader" for c in fake.calls) == 1


def test_defrag_goes_leader_last_and_refuses_without_a_member():
    fake = Etcdctl()
    with patch.dict(etcdctl.__salt__, {"cmd.run_all": fake}):
        plan = etcdctl.defrag_plan()
        done = etcdctl.defrag(wait_healthy=1)
    assert plan["ok"] and plan["quorum"] == 2 and plan["order"][-1] == URLS["m2"]
    assert [d["endpoint"] for d in done] == plan["order"]
    assert all(d["db_size_before"] == 4096 for d in done)
    sick = Etcdctl(down={"m3"})
    with patch.dict(etcdctl.__salt__, {"cmd.run_all": sick}):
        refused = etcdctl.defrag_plan()
        status = {s["endpoint"]: s for s in etcdctl.endpoint_status()}
        with pytest.raises(CommandExecutionError, match="refusing to defragment"):
            etcdctl.defrag()
    assert refused["ok"] is False and URLS["m3"] in refused["reason"]
    assert status[URLS["m3"]]["reachable"] is False
    assert "context deadline exceeded" in status[URLS["m3"]]["error"]
    assert ["defrag"] not in sick.calls


def test_the_command_line_is_kubeadms_unless_told_otherwise():
    fake, seen = Etcdctl(), []

    def record(cmd, **kw):
        seen.append((cmd, kw))
        return fake(cmd, **kw)

    with patch.dict(etcdctl.__salt__, {"cmd.run_all": record}):
        etcdctl.member_list()
        etcdctl.member_list(f"{URLS['m1']}, {URLS['m2']}", cacert="/ca.pem")
    (cmd, kw), (told, _) = seen
    pki = "/etc/kubernetes/pki/etcd"
    assert cmd[1:] == [f"--cacert={pki}/ca.crt", f"--cert={pki}/healthcheck-client.crt",
                       f"--key={pki}/healthcheck-client.key", "--endpoints=https://127.0.0.1:2379",
                       "--dial-timeout=2s", "--command-timeout=5s",
                       "member", "list", "-w", "json"]  # fmt: skip
    assert kw["env"] == {"ETCDCTL_API": "3"} and kw["python_shell"] is False
    assert told[1] == "--cacert=/ca.pem" and told[4] == f"--endpoints={URLS['m1']},{URLS['m2']}"


def test_callbacks_need_no_utils_lookup():
    """defrag's and move's policy utils call the module back from the utils loader's
    context, where the module's __utils__ is not packed: what the callbacks use is resolved
    before (_CALLBACK_UTILS)."""

    def in_utils_context(fn):
        def call(*args, **kwargs):
            with patch.dict(etcdctl.__utils__, clear=True):
                return fn(*args, **kwargs)

        return call

    policies = ("etcdctl_defrag.plan", "etcdctl_defrag.run", "etcdctl_move.move")
    wrapped = {name: in_utils_context(etcdctl.__utils__[name]) for name in policies}
    # m3 down: its own status does not answer, so the move falls back to leader().
    fake = Etcdctl(down={"m3"})
    etcdctl._RESOLVED.clear()
    try:
        with (
            patch.dict(etcdctl.__utils__, wrapped),
            patch.dict(etcdctl.__salt__, {"cmd.run_all": fake}),
        ):
            ret = etcdctl.move_leader("m1", endpoints=URLS["m3"])
            fake.down.clear()
            etcdctl.defrag(wait_healthy=1)
    finally:
        etcdctl._RESOLVED.clear()  # it holds the wrapped policies
    assert ret["changed"] is True and ret["leader"]["name"] == "m1", ret
    assert ["defrag"] in fake.calls


def test_servers_reads_show_stat_once():
    csv = (SAMPLES / "haproxy_show_stat.csv").read_text()
    with patch.object(haproxy, "command", return_value=csv) as command:
        found = haproxy.servers("kube-apiserver")
        assert [c.args[0] for c in command.call_args_list] == ["show stat"]
        command.reset_mock()
        with pytest.raises(CommandExecutionError, match="no backend named 'nope'"):
            haproxy.servers("nope")
        assert [c.args[0] for c in command.call_args_list] == ["show stat"]
    assert {s["name"] for s in found} == {"cp-1", "cp-2", "cp-3"}


def test_join_configuration_uses_the_sealed_token_for_tls_bootstrap(tmp_path):
    base = tmp_path / "join.yaml"
    base.write_text(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\n"
        "discovery:\n  tlsBootstrapToken: stale0.0000000000000000\n"
    )
    secret = {"token": "abcdef.0123456789abcdef", "endpoint": "198.18.0.10:8443",
              "ca_cert_hashes": ["sha256:" + "0" * 64]}  # fmt: skip
    cfg = kubeadm_join._join_configuration(secret, False, str(base), {})
    assert cfg["discovery"]["tlsBootstrapToken"] == secret["token"]
    assert cfg["discovery"]["bootstrapToken"]["token"] == secret["token"]
