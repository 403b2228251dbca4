"""CI's rule (tests/conftest.py): under CI=true nothing passes by skipping. Checked by running
pytest inside pytest (pytester) with the repository's own hooks, so the rule cannot stop
working unnoticed: every kind of skip becomes a failure that keeps its reason, while passes
and expected failures stay what they are, and outside CI the skips stay skips."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import conftest

SKIPPING = """
import pytest

def test_passes():
    pass

def test_skip_call():
    pytest.skip("haproxy is not installed (`make test` installs it)")

@pytest.mark.skip(reason="this host cannot run the lab: cgroup v2 only")
def test_skip_mark():
    pass

@pytest.mark.skipif(True, reason="needs dpkg-deb (Debian's dpkg)")
def test_skipif_mark():
    pass

def test_importorskip():
    pytest.importorskip("kubeha_no_such_module")

@pytest.fixture
def etcd_34():
    pytest.skip("etcd 3.4 is not installed")

def test_skip_in_a_fixture(etcd_34):
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False
"""

PREFIX = (
    "CI=true: this test would have been skipped, and CI must run every test; fix the machine "
    "or the test. Skip reason: "
)

MODULE_SKIP = """
import pytest

pytest.importorskip("kubeha_no_such_module")

def test_never_collected():
    pass
"""


@pytest.fixture
def run(pytester, monkeypatch):
    """Runs the snippets with the repository's CI hooks, CI set as asked."""
    pytester.makeconftest(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    pytester.makepyfile(test_skipping=SKIPPING)
    # Only pytest's own plugins: salt-factories' log server costs a second per run.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def _run(ci: str | None, *files: str):
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        return pytester.runpytest("-rA", "-p", "no:cacheprovider", *files)

    return _run


def test_outside_ci_skips_stay_skips(run):
    result = run(None)
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)
    assert result.ret == 0


def test_under_ci_every_skip_fails_with_its_reason(run):
    result = run("true")
    # A skip raised in the test body is a failure; one raised while setting the test up
    # (a mark, a fixture) is an error.
    result.assert_outcomes(passed=1, failed=2, errors=3, xfailed=1)
    assert result.ret == 1
    out = result.stdout.str()
    for reason in (
        "haproxy is not installed (`make test` installs it)",
        "this host cannot run the lab: cgroup v2 only",
        "needs dpkg-deb (Debian's dpkg)",
        "could not import 'kubeha_no_such_module': No module named 'kubeha_no_such_module'",
        "etcd 3.4 is not installed",
    ):
        assert f"{PREFIX}{reason}" in out, reason
    # The short summary (-ra) names each test with the reason.
    result.stdout.fnmatch_lines(
        [
            "ERROR test_skipping.py::test_skip_mark - *CI=true*cgroup v2 only",
            "FAILED test_skipping.py::test_skip_call - *CI=true*haproxy is not installed*",
        ],
        consecutive=False,
    )


def test_under_ci_a_module_skipped_at_collection_stops_the_run(run, pytester):
    pytester.makepyfile(test_module_skip=MODULE_SKIP)
    result = run("true", "test_module_skip.py")
    result.assert_outcomes(errors=1)
    assert result.ret == 2  # interrupted: a collection error
    result.stdout.fnmatch_lines(
        ["ERROR test_module_skip.py - CI=true*could not import 'kubeha_no_such_module'*"]
    )
    run(None, "test_module_skip.py").assert_outcomes(skipped=1)


@pytest.mark.parametrize("value", ["false", "0", "no", ""])
def test_ci_set_to_false_is_not_ci(run, value):
    run(value).assert_outcomes(passed=1, skipped=5, xfailed=1)


def _report(outcome: str, longrepr, **extra):
    return SimpleNamespace(skipped=outcome == "skipped", longrepr=longrepr, **extra)


def test_the_decision():
    skipped = _report("skipped", ("/repo/tests/x.py", 3, "Skipped: needs root"))
    assert conftest.ci_failure(skipped, {}) is None
    assert conftest.ci_failure(skipped, {"CI": "1"}).endswith("Skip reason: needs root")
    xfail = _report("skipped", None, wasxfail="a known bug")
    assert conftest.ci_failure(xfail, {"CI": "true"}) is None
    passed = _report("passed", None)
    assert conftest.ci_failure(passed, {"CI": "true"}) is None
    assert [conftest.ci_run({"CI": v}) for v in ("true", "1", "yes", "False", " 0 ", "")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_require_binary_fails_instead_of_skipping(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match=r"haproxy is not installed; `make test`"):
        conftest.require_binary("haproxy")
