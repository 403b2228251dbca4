"""netem: tc command lines, parsing and the no-sch_netem error, with cmd.run_all mocked."""

from unittest.mock import MagicMock, patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load

netem = load("_modules", "netem")

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
    parsed = netem._parse_tc_show(TC_SHOW)
    assert parsed["delay"] == 200.0 and parsed["jitter"] == 20.0
    assert parsed["loss"] == 20.0 and parsed["duplicate"] == 1.0 and parsed["corrupt"] == 0.1
    assert parsed["rate"] == "10Mbit"
    assert netem._parse_tc_show("qdisc noqueue 0: root refcnt 2\n") is None


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
        patch.object(netem.subprocess, "Popen", popen),
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
