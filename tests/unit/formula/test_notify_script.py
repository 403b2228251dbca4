"""
kubeha-notify.sh, which keepalived runs as root on every VRRP transition: rendered with
Salt's own Jinja (and its `quote` filter) from values that pass the model's rules, it is
valid shell and inert: what keepalived passes and what pillar gave reach salt-call as plain
arguments, never as code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import salt.config
import salt.utils.templates

from tests.conftest import REPO

TEMPLATE = REPO / "salt/kubeha/files/keepalived/kubeha-notify.sh.jinja"
# Valid under kubeha_rules_strings, and shaped like trouble: leading digits, double dashes,
# a prefix with several parts.
MODEL = {
    "cluster": {"name": "rm-rf--x"},
    "derived": {"node": {"name": "0-cp"}},
    "vrrp": {"notify_event_prefix": "kubeha/vrrp/x-1"},
}


def _render(tmp_path: Path) -> Path:
    opts = salt.config.minion_config(None)
    opts["file_client"] = "local"
    out = salt.utils.templates.render_jinja_tmpl(
        TEMPLATE.read_text(), {"opts": opts, "saltenv": "base", "kubeha": MODEL}
    )
    script = tmp_path / "kubeha-notify.sh"
    script.write_text(out)
    script.chmod(0o700)
    return script


def _fake_salt_call(bindir: Path, record: Path) -> None:
    bindir.mkdir()
    fake = bindir / "salt-call"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {record}\n')
    fake.chmod(0o755)


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_rendered_script_is_valid_shell(tmp_path, shell):
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is not installed")
    script = _render(tmp_path)
    check = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def _run(script: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    record = tmp_path / "salt-call.args"
    bindir = tmp_path / "bin"
    if not bindir.exists():
        _fake_salt_call(bindir, record)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "KUBEHA_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run(
        ["sh", str(script), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    return proc, record


def _wait_for(path: Path) -> list[str]:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().splitlines()
        time.sleep(0.05)
    raise AssertionError(f"salt-call was not called ({path})")


def test_script_passes_pillar_values_as_plain_arguments(tmp_path):
    script = _render(tmp_path)
    proc, record = _run(script, tmp_path, "INSTANCE", "VI_1", "MASTER", "150")
    assert proc.returncode == 0, proc.stderr
    args = _wait_for(record)
    assert args[:3] == ["--out=quiet", "event.send", "kubeha/vrrp/x-1/rm-rf--x/0-cp/master"]
    assert "cluster=rm-rf--x" in args and "node=0-cp" in args and "priority=150" in args
    state = (tmp_path / "run/keepalived/VI_1.json").read_text()
    assert '"state": "MASTER"' in state and '"priority": 150' in state


def test_hostile_arguments_from_the_caller_run_nothing(tmp_path):
    """Whatever reaches the script's arguments is data: nothing is created or run."""
    script = _render(tmp_path)
    pwned = tmp_path / "pwned"
    for args in (
        ("INSTANCE", "$(touch pwned)", "MASTER", "1"),
        ("INSTANCE", "VI_1", "MASTER;touch pwned", "1"),
        ("INSTANCE", "VI_1", "MASTER", "1;touch pwned"),
        ("INSTANCE", "../../etc", "MASTER", "1"),
    ):
        proc, _ = _run(script, tmp_path, *args)
        assert proc.returncode == 0, proc.stderr
    assert not pwned.exists()
    written = sorted(os.listdir(tmp_path / "run/keepalived")) if (tmp_path / "run").exists() else []
    # Only the instance name keepalived can have: the priority is forced to a number.
    assert written in ([], ["VI_1.json"]), written
    if written:
        assert '"priority": 0' in (tmp_path / "run/keepalived/VI_1.json").read_text()
