"""keepalived: signals reach only keepalived, the dump never lingers, the config copy is
never loose, and nothing persists before validation. No root, no real keepalived: a copy
of bash named ``keepalived`` stands in (so /proc/<pid>/comm and exe say keepalived)."""

import json
import os
import shutil
import signal
import stat
import subprocess
import textwrap
import time
from pathlib import Path
from unittest.mock import MagicMock, patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_load import load, utils

keepalived = load("_modules", "keepalived")
proc = load("_utils", "keepalived_proc")
CONF = textwrap.dedent(
    """\
    vrrp_instance VI_1 {
        state BACKUP
        interface eth0
        virtual_router_id 51
        priority 90
        authentication {
            auth_type PASS
            auth_pass s3cret
        }
    }
    """
)


@pytest.fixture
def paths(tmp_path):
    d = {
        "config": tmp_path / "keepalived.conf",
        "pid_file": tmp_path / "keepalived.pid",
        "dump_dir": tmp_path / "dump",
        "notify_dir": tmp_path / "notify",
    }
    d["dump_dir"].mkdir()
    d["notify_dir"].mkdir()
    d["config"].write_text(CONF)
    d["config"].chmod(0o640)
    return d


@pytest.fixture
def settings(paths):
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def configure_loader_modules(settings):
    return {
        keepalived: {
            "__salt__": {"config.get": lambda key, default=None: settings},
            "__utils__": utils("keepalived_proc", "keepalived_conf"),
        }
    }


@pytest.fixture
def spawn(tmp_path):
    """Start a bash script under a given program name; every process is killed by PID."""
    started: list[subprocess.Popen] = []

    def _spawn(name: str, traps: str) -> subprocess.Popen:
        exe = tmp_path / "bin" / name
        exe.parent.mkdir(exist_ok=True)
        if not exe.exists():
            shutil.copy2(shutil.which("bash"), exe)
        ready = tmp_path / f"ready-{len(started)}"
        script = f'{traps}\ntouch "{ready}"\nwhile :; do sleep 0.05; done'
        p = subprocess.Popen([str(exe), "-c", script], start_new_session=True)
        started.append(p)
        deadline = time.monotonic() + 5
        while not ready.exists():  # traps set: a signal now is handled, not fatal
            assert time.monotonic() < deadline, "the stand-in did not start"
            time.sleep(0.01)
        assert Path(f"/proc/{p.pid}/comm").read_text().strip() == name[:15]
        return p

    yield _spawn
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)


def _fake_keepalived(spawn, dump: Path, answer_after: float, marker: Path):
    # Answers SIGUSR1 (our stand-in for SIGJSON) like keepalived: the whole file, renamed.
    trap = f"""trap 'sleep {answer_after}; echo "[]" > "{dump}.w"; mv "{dump}.w" "{dump}";
                     touch "{marker}"' USR1"""
    return spawn("keepalived", trap)


def test_a_stale_pid_file_signals_nobody(paths, settings, spawn):
    # The pid file names a live process that took keepalived's old PID.
    stranger = spawn("sleep-ish", "")
    paths["pid_file"].write_text(f"{stranger.pid}\n")
    assert proc.read_pid(paths["pid_file"]) is None
    assert proc.send_signal(paths["pid_file"], signal.SIGHUP) is None
    settings["netns"] = "khm-none"  # not systemd's keepalived: the SIGHUP path
    with pytest.raises(CommandExecutionError, match="names no keepalived"):
        keepalived.reload()
    time.sleep(0.2)
    assert stranger.poll() is None, "SIGHUP reached a process that is not keepalived"


def test_sighup_reaches_keepalived(paths, spawn):
    target = spawn("keepalived", "trap 'exit 7' HUP")
    paths["pid_file"].write_text(f"{target.pid}\n")
    assert proc.send_signal(paths["pid_file"], signal.SIGHUP) == target.pid
    assert target.wait(timeout=5) == 7


def test_a_late_dump_is_removed_after_the_wait(paths, spawn, tmp_path):
    dump = paths["dump_dir"] / "keepalived.json"
    marker = tmp_path / "written"
    fake = _fake_keepalived(spawn, dump, answer_after=0.8, marker=marker)
    paths["pid_file"].write_text(f"{fake.pid}\n")
    assert proc.fetch_dump(paths["pid_file"], dump, signal.SIGUSR1, timeout=0.2) is None
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the stand-in never wrote its dump"
        time.sleep(0.02)
    # The reaper polls every 0.1 s; the dump (a password in clear) must not stay.
    while dump.exists():
        assert time.monotonic() < deadline, "the late dump was left in place"
        time.sleep(0.02)


def test_a_dump_in_time_is_read_and_removed(paths, spawn, tmp_path):
    dump = paths["dump_dir"] / "keepalived.json"
    fake = _fake_keepalived(spawn, dump, answer_after=0, marker=tmp_path / "written")
    paths["pid_file"].write_text(f"{fake.pid}\n")
    assert proc.fetch_dump(paths["pid_file"], dump, signal.SIGUSR1, timeout=5) == []
    assert not dump.exists()


def test_without_json_support_instances_fall_back_to_notify_files(paths, spawn, tmp_path):
    dump = paths["dump_dir"] / "keepalived.json"
    marker = tmp_path / "written"
    fake = _fake_keepalived(spawn, dump, answer_after=0, marker=marker)
    paths["pid_file"].write_text(f"{fake.pid}\n")
    (paths["notify_dir"] / "VI_1.json").write_text(
        json.dumps({"instance": "VI_1", "state": "master", "priority": 100, "time": 1.5})
    )
    # keepalived built without _WITH_JSON_ (keepalived/core/main.c, --signum)
    no_json = MagicMock(return_value={"retcode": 1, "stdout": "", "stderr": "Unknown sigfunc JSON"})
    with patch.dict(keepalived.__salt__, {"cmd.run_all": no_json}):
        found = keepalived.instances()
    assert [(i["name"], i["state"], i["effective_priority"]) for i in found] == [
        ("VI_1", "MASTER", 100)
    ]
    assert found[0]["source"].endswith("VI_1.json")
    assert no_json.call_args.args[0] == ["keepalived", "--signum=JSON"]
    time.sleep(0.2)
    assert not marker.exists(), "signalled although it cannot dump"


def _recording_salt(paths, retcode: int, events: list):
    def run_all(cmd, **kw):
        staged = Path(cmd[-1])
        events.append(("config-test", stat.S_IMODE(staged.stat().st_mode)))
        return {"retcode": retcode, "stdout": "", "stderr": "bad priority" if retcode else ""}

    def setval(key, value):
        events.append(("grain", key, value))

    return {"cmd.run_all": run_all, "grains.setval": setval}


def test_a_rejected_config_persists_nothing(paths):
    events: list = []
    with (
        patch.dict(keepalived.__salt__, _recording_salt(paths, 1, events)),
        pytest.raises(CommandExecutionError, match="rejects the new config: bad priority"),
    ):
        keepalived.set_priority(150)
    assert events == [("config-test", 0o600)]  # staged 0600; no grain
    assert paths["config"].read_text() == CONF
    assert sorted(p.name for p in paths["config"].parent.glob("keepalived.conf*")) == [
        "keepalived.conf"
    ]


def test_set_priority_validates_then_persists_then_reloads(paths, settings, spawn, tmp_path):
    # A keepalived stand-in that, on SIGHUP, copies the config it would re-read: the reload
    # must reach it, once, and only after the new priority is in the live file.
    seen = tmp_path / "reloaded"
    target = spawn("keepalived", f"""trap 'cat "{paths["config"]}" >> "{seen}"' HUP""")
    paths["pid_file"].write_text(f"{target.pid}\n")
    settings["netns"] = "khm-none"  # not systemd's keepalived: the SIGHUP path
    events: list = []
    with patch.dict(keepalived.__salt__, _recording_salt(paths, 0, events)):
        ret = keepalived.set_priority(150)
        deadline = time.monotonic() + 5
        while not seen.exists():  # bash runs the trap between its 50 ms sleeps
            assert time.monotonic() < deadline, "SIGHUP never reached keepalived"
            time.sleep(0.02)
        again = keepalived.set_priority(150)
    assert ret == {"instance": "VI_1", "old": 90, "new": 150, "config_changed": True,
                   "reloaded": True, "how": f"SIGHUP to {target.pid}"}  # fmt: skip
    assert events[:2] == [("config-test", 0o600), ("grain", "kubeha_vrrp_priority", 150)]
    assert again["config_changed"] is False and "how" not in again  # unchanged: no reload
    time.sleep(0.2)
    reloads = seen.read_text()
    assert reloads.count("vrrp_instance VI_1") == 1, reloads  # one SIGHUP for two calls
    assert "priority 150" in reloads and "priority 90" not in reloads
    assert target.poll() is None  # a reload, not a stop
    assert "priority 150" in paths["config"].read_text()
    assert stat.S_IMODE(paths["config"].stat().st_mode) == 0o640  # the live file's mode
    assert os.stat(paths["config"]).st_uid == os.getuid()
    assert not paths["config"].with_name("keepalived.conf.kubeha-new").exists()
