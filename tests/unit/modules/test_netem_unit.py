"""netem: tc command lines, parsing and the no-sch_netem error, with cmd.run_all mocked;
process identity before any signal, systemd command lines, the daemon's clock."""

from unittest.mock import MagicMock, patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load, utils

netem = load("_modules", "netem")
tc = load("_utils", "netem_tc")
launch = load("_utils", "netem_launch")
procs = load("_utils", "netem_procs")
UTILS = ("netem_tc", "netem_procs", "netem_launch")

# iproute2 tc/q_netem.c netem_print_opt(): "limit %d", " delay %s", "  %s" (jitter),
# " loss %s", " duplicate %s", " corrupt %s", " rate %s"; as `tc qdisc show` prints it.
TC_SHOW = (
    "qdisc netem 8001: root refcnt 2 limit 1000 delay 200ms  20ms loss 20% "
    "duplicate 1% corrupt 0.1% rate 10Mbit\n"
    "qdisc pfifo_fast 0: parent :1 bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n"
)


@pytest.fixture
def configure_loader_modules(tmp_path):
    return {
        netem: {
            "__salt__": {"config.get": lambda key, default=None: {"state_dir": str(tmp_path)}},
            "__opts__": {"extension_modules": str(tmp_path / "ext"), "utils_dirs": []},
            "__utils__": utils(*UTILS),
        }
    }


def test_tc_command_lines_are_exact():
    params = netem.normalize("200ms", "20ms", "20%", duplicate=1, corrupt="0.1", rate="10mbit")
    assert netem.tc_command("add", "ens160", params) == [
        "tc",
        "qdisc",
        "add",
        "dev",
        "ens160",
        "root",
        "netem",
        "delay",
        "200ms",
        "20ms",
        "loss",
        "20%",
        "duplicate",
        "1%",
        "corrupt",
        "0.1%",
        "rate",
        "10mbit",
    ]
    assert netem.tc_command("change", "eth0", netem.normalize(delay=1.5), netns="n1") == [
        "tc",
        "-n",
        "n1",
        "qdisc",
        "change",
        "dev",
        "eth0",
        "root",
        "netem",
        "delay",
        "1.5ms",
    ]
    assert netem.tc_command("add", "eth0", netem.normalize(delay="1s", loss=5))[7:] == [
        "delay",
        "1000ms",
        "loss",
        "5%",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no fault given"),
        ({"jitter": "10ms"}, "jitter needs a delay"),
        ({"loss": 150}, "out of range"),
        ({"delay": "fast"}, "not a duration"),
        ({"rate": "lots"}, "not a rate"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(CommandExecutionError, match=message):
        netem.normalize(**kwargs)


def test_parse_tc_show():
    parsed = tc.parse_show(TC_SHOW)
    assert parsed["delay"] == 200.0 and parsed["jitter"] == 20.0
    assert parsed["loss"] == 20.0 and parsed["duplicate"] == 1.0 and parsed["corrupt"] == 0.1
    assert parsed["rate"] == "10Mbit"
    assert tc.parse_show("qdisc noqueue 0: root refcnt 2\n") is None


class KernelWithNetem:
    """cmd.run_all answering like iproute2's tc on a kernel with sch_netem: add puts the
    qdisc in place, show prints it as tc/q_netem.c does, del removes it."""

    def __init__(self):
        self.qdisc = None
        self.calls: list[list[str]] = []

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        ok = {"retcode": 0, "stdout": "", "stderr": ""}
        if cmd[:2] != ["tc", "qdisc"]:
            return dict(ok, stdout="0")  # iptables rule cleanup and the like: nothing there
        if cmd[2] == "add":
            opts = " ".join(cmd[cmd.index("netem") + 1 :])
            self.qdisc = f"qdisc netem 8001: root refcnt 2 limit 1000 {opts}\n"
            return ok
        if cmd[2] == "del":
            self.qdisc = None
            return ok
        assert cmd[2] == "show", cmd
        return dict(ok, stdout=self.qdisc or "qdisc noqueue 0: root refcnt 2\n")


def test_tc_backend_on_a_kernel_with_netem():
    """The branch a kernel with sch_netem takes (tests/root/modules/test_netem_tc.py runs
    the real tc, on whichever kernel CI has)."""
    tc_sim = KernelWithNetem()
    with patch.dict(netem.__salt__, {"cmd.run_all": tc_sim}):
        ret = netem.add("d0", delay="200ms", jitter="20ms", loss=20, backend="tc")
        assert ret["backend"] == "tc" and ret["expires"] is None
        assert ret["command"] == [
            "tc", "qdisc", "add", "dev", "d0", "root", "netem", "delay", "200ms", "20ms",
            "loss", "20%",
        ]  # fmt: skip
        shown = netem.show("d0")
        assert shown["active"] is True and shown["backend"] == "tc"
        assert shown["qdisc"]["delay"] == 200.0 and shown["qdisc"]["jitter"] == 20.0
        assert shown["qdisc"]["loss"] == 20.0
        with pytest.raises(CommandExecutionError, match="already has a netem fault"):
            netem.add("d0", delay=50, backend="tc")
        assert netem.clear("d0")["removed"] == ["tc qdisc"]
        assert ["tc", "qdisc", "del", "dev", "d0", "root"] in tc_sim.calls
        assert netem.show("d0")["active"] is False


def test_kernel_without_netem_gives_the_fix():
    run_all = MagicMock(
        return_value={
            "retcode": 2,
            "stdout": "",
            "stderr": "Error: Specified qdisc kind is unknown.",
        }
    )
    with (
        patch.dict(netem.__salt__, {"cmd.run_all": run_all}),
        pytest.raises(CommandExecutionError) as err,
    ):
        netem._tc_apply("add", "ens160", {"delay": 200.0}, "")
    text = str(err.value)
    assert "no sch_netem" in text and "linux-modules-extra-" in text and "backend=nfqueue" in text
    assert run_all.call_args.args[0] == [
        "tc",
        "qdisc",
        "add",
        "dev",
        "ens160",
        "root",
        "netem",
        "delay",
        "200ms",
    ]


def test_tc_add_with_duration_arms_a_detached_timer(tmp_path):
    calls = []

    def run_all(cmd, **kw):
        calls.append(cmd)
        return {"retcode": 0, "stdout": "", "stderr": ""}

    script = tmp_path / "ext" / "utils" / "netem_nfqueue.py"
    script.parent.mkdir(parents=True)
    script.write_text("")
    popen = MagicMock()
    popen.return_value.pid = 4242
    with (
        patch.dict(netem.__salt__, {"cmd.run_all": run_all}),
        patch.object(netem, "_pick", return_value="tc"),
        patch.object(netem, "_has_systemd", return_value=False),
        patch.object(launch.subprocess, "Popen", popen),
    ):
        ret = netem.add("ens160", delay=200, loss=20, duration=60)
    assert calls[-1] == [
        "tc",
        "qdisc",
        "add",
        "dev",
        "ens160",
        "root",
        "netem",
        "delay",
        "200ms",
        "loss",
        "20%",
    ]
    timer = popen.call_args.args[0]
    assert timer[1:4] == [str(script), "timer", "--state"]
    assert timer[timer.index("--after") + 1] == "60.000"
    assert timer[timer.index("--") + 1 :] == ["tc", "qdisc", "del", "dev", "ens160", "root"]
    assert popen.call_args.kwargs["start_new_session"] is True
    assert ret["auto_clear"] == {"how": "detached process", "pid": 4242}
    assert ret["expires"] > ret["started"] + 59


def test_nfqueue_refuses_tc_only_faults():
    with pytest.raises(CommandExecutionError, match="not rate"):
        netem._nfqueue_start("eth0", {"delay": 1.0, "rate": "1mbit"}, 0, "", "t")


def test_detached_timer_runs_only_while_its_token_is_current(tmp_path):
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "_utils" / "netem_nfqueue.py"
    ours, stale = tmp_path / "ours.json", tmp_path / "stale.json"
    ours.write_text(json.dumps({"token": "t1"}))
    stale.write_text(json.dumps({"token": "newer"}))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                "timer",
                "--after",
                "0.3",
                "--state",
                str(state),
                "--token",
                "t1",
                "--",
                "touch",
                str(tmp_path / mark),
            ],
            start_new_session=True,
        )
        for state, mark in ((ours, "fired"), (stale, "must-not-fire"))
    ]
    started = time.monotonic()
    for proc in procs:
        proc.wait(timeout=10)
    assert time.monotonic() - started >= 0.3
    assert (tmp_path / "fired").exists() and not ours.exists()
    assert not (tmp_path / "must-not-fire").exists() and stale.exists()


# --- a PID from /run is signalled only while it is still the process recorded -----------


@pytest.fixture
def stranger():
    """A process that has nothing to do with netem (as after PID reuse)."""
    import subprocess
    import time

    proc = subprocess.Popen(["sleep", "60"])
    deadline = time.monotonic() + 5
    while procs.start_time(proc.pid) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait(timeout=5)


def _quiet_tools(cmd, **kw):
    return {"retcode": 0, "stdout": "", "stderr": ""}


@pytest.mark.parametrize("recorded_start", ["other", None])
def test_clear_never_signals_a_reused_pid(tmp_path, stranger, recorded_start):
    # A state file from a daemon long gone; its pid now names `sleep`.
    start = procs.start_time(stranger.pid) + 1 if recorded_start == "other" else None
    state = {"backend": "nfqueue", "token": "t", "pid": stranger.pid, "start_time": start}
    procs.write_state(tmp_path / "ens160.json", state)
    with (
        patch.dict(netem.__salt__, {"cmd.run_all": _quiet_tools}),
        patch.object(netem, "_has_systemd", return_value=False),
        patch.object(netem, "_daemon_script", return_value="/x/netem_nfqueue.py"),
    ):
        assert netem.show("ens160")["active"] is False
        netem.clear("ens160")
    assert stranger.poll() is None, "netem.clear killed a process that was not its daemon"
    assert not (tmp_path / "ens160.json").exists()


def test_terminate_stops_the_recorded_process(stranger):
    started = procs.start_time(stranger.pid)
    assert procs.alive(stranger.pid, started)
    assert not procs.alive(stranger.pid, started + 1)
    assert procs.terminate(stranger.pid, started + 1, grace=1) is False
    assert stranger.poll() is None
    assert procs.terminate(stranger.pid, started, grace=1) is True
    # Gone and reaped (terminate reaps a child of ours, so Popen cannot see the status).
    assert not procs.alive(stranger.pid, started) and procs.start_time(stranger.pid) is None


def test_state_written_by_the_daemon_records_its_start_time(tmp_path):
    import argparse
    import os

    daemon = load("_utils", "netem_nfqueue")
    args = argparse.Namespace(token="t", ifname="eth0", queue=4201, delay_ms=1.0,
                              jitter_ms=0.0, loss_pct=0.0, duration=0.0)  # fmt: skip
    daemon._write_state(tmp_path / "s.json", args, os.getpid())
    written = procs.read_state(tmp_path / "s.json")
    assert written["start_time"] == procs.start_time(os.getpid())
    assert procs.alive(written["pid"], written["start_time"])


# --- systemd: command lines that survive odd paths; failures quote the daemon ---------


def test_exec_line_keeps_paths_with_spaces_whole():
    import shlex

    args = ["/opt/salt dir/bin/python3", "/var/cache/salt/x y/netem_nfqueue.py", "rules-clear",
            "--ifname", 'we"ird$if']  # fmt: skip
    line = launch.exec_line(args)
    # systemd.service(5): double quotes group, backslash escapes; "$$" is a literal "$".
    assert [w.replace("$$", "$") for w in shlex.split(line)] == args


def test_systemd_start_logs_to_the_file_its_error_quotes(tmp_path):
    calls = []

    def run_all(cmd, **kw):
        calls.append(cmd)
        if cmd[0] == "systemd-run":
            # systemd appends the unit's output to the file named in StandardOutput.
            out = next(a for a in cmd if a.startswith("--property=StandardOutput=append:"))
            with open(out.split("append:", 1)[1], "a") as fh:
                fh.write("iptables v1.8.9: can't initialize iptables table `mangle'\n")
        if cmd[:2] == ["ip", "-o"] or "link" in cmd:
            return {"retcode": 0, "stdout": "7: eth0: <BROADCAST> mtu 1500\n", "stderr": ""}
        return {"retcode": 0, "stdout": "", "stderr": ""}

    with (
        patch.dict(netem.__salt__, {"cmd.run_all": run_all}),
        patch.object(netem, "_has_systemd", return_value=True),
        patch.object(netem, "_daemon_script", return_value="/srv/salt x/netem_nfqueue.py"),
        patch.object(netem.shutil, "which", return_value="/usr/sbin/iptables"),
        patch.object(launch, "START_TIMEOUT_S", 0.3),
        pytest.raises(CommandExecutionError, match="can't initialize iptables table"),
    ):
        netem._nfqueue_start("eth0", {"delay": 200.0}, 60, "", "tok")
    run = next(c for c in calls if c[0] == "systemd-run")
    stop_post = next(a for a in run if a.startswith("--property=ExecStopPost="))
    assert '"/srv/salt x/netem_nfqueue.py" "rules-clear" "--ifname" "eth0"' in stop_post
    assert "--property=RuntimeMaxSec=90" in run
    assert run[run.index("--property=RuntimeMaxSec=90") + 1 :][2:4] == ["run", "--ifname"]


# --- the daemon: the duration counts from when the rules are in -------------------------


def test_daemon_duration_starts_once_its_rules_are_in(tmp_path):
    import argparse
    import socket
    import time

    daemon = load("_utils", "netem_nfqueue")
    marks = {}

    class FakeQueue:
        def __init__(self, num):
            self.sock, self.peer = socket.socketpair()

        def bind(self):
            pass

        def packets(self):
            return []

        def unbind(self):
            self.sock.close()
            self.peer.close()

    def slow_rules_add(ifname, queue):
        time.sleep(0.6)  # iptables -w on a loaded node
        marks["rules_in"] = time.monotonic()

    args = argparse.Namespace(seed=1, queue=4201, state=str(tmp_path / "s.json"), token="t",
                              ifname="eth0", delay_ms=1.0, jitter_ms=0.0, loss_pct=0.0,
                              duration=0.5)  # fmt: skip
    with (
        patch.object(daemon, "Queue", FakeQueue),
        patch.object(daemon, "rules_add", slow_rules_add),
        patch.object(daemon, "rules_clear", return_value=0),
    ):
        daemon.run(args)
    assert time.monotonic() - marks["rules_in"] >= 0.5
