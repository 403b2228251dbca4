"""kubeadm_certs and kubeadm_upgrade with ``cmd.run_all`` answering as kubeadm does.

check-expiration is printed as kubeadm's certs.go prints it (tabwriter 10/4/3, expiry
"Jan 02, 2006 15:04 MST", ShortHumanDuration, yes/no padded %-8v), after the
"[check-expiration] Reading configuration from the cluster..." lines of
FetchInitConfigurationFromCluster; expiry dates are set relative to now so that
``expiring`` has something to decide. upgrade plan is samples/kubeadm_upgrade_plan.txt
(plan_test.go); apply/node print apply.go's and node.go's closing lines.
(restart_static_pods is in test_crictl_calls.py, over crictl.)
"""

import datetime as dt
from pathlib import Path
from unittest.mock import patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.unit.modules.khm_cmd import RunAll, fails, ok, tabwriter
from tests.unit.modules.khm_load import all_utils, load

kubeadm = load("_modules", "kubeadm")
kubeadm_certs = load("_modules", "kubeadm_certs")
kubeadm_upgrade = load("_modules", "kubeadm_upgrade")
SAMPLES = Path(__file__).parent / "samples"
PREAMBLE = (
    "[check-expiration] Reading configuration from the cluster...\n"
    "[check-expiration] FYI: You can look at this config file with "
    "'kubectl -n kube-system get cm kubeadm-config -o yaml'\n\n"
)
STACK_HINT = "\nTo see the stack trace of this error execute with --v=5 or higher\n"


SETTINGS: dict = {}


@pytest.fixture
def configure_loader_modules():
    SETTINGS.clear()
    return {
        kubeadm: {
            "__salt__": {"config.get": lambda key, default=None: SETTINGS.get(key, default)},
            "__utils__": all_utils(),
        },
        kubeadm_certs: {"__salt__": {}, "__utils__": all_utils()},
        kubeadm_upgrade: {
            # the kubeadm module's own functions, as Salt's loader cross-calls them
            "__salt__": {
                "kubeadm.version": kubeadm.version,
                "kubeadm.config_dir": kubeadm.config_dir,
            },
            "__utils__": all_utils(),
        },
    }


def _with(run_all: RunAll):
    return patch.dict(kubeadm_certs.__salt__, {"cmd.run_all": run_all})


def _expiry(days: float) -> tuple[str, str]:
    # The clock is read when the output is made, right before it is parsed: a module-level
    # "now" was 58 minutes old by the time CI reached this test (0.04 days off).
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(second=0, microsecond=0)
    # duration.ShortHumanDuration: "<n>d" under a year, "<n>y" beyond
    residual = f"{int(days)}d" if days < 365 else f"{int(days // 365)}y"
    return when.strftime("%b %d, %Y %H:%M UTC"), residual


def check_expiration_output(certs: dict[str, tuple[float, str, bool]]) -> str:
    """certs: name -> (days left, CA, externally managed)."""
    rows = [["CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY",
             "EXTERNALLY MANAGED"]]  # fmt: skip
    for name, (days, ca, external) in certs.items():
        rows.append([name, *_expiry(days), ca, f"{'yes' if external else 'no':<8}"])
    rows += [[], ["CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"]]
    for name in ("ca", "etcd-ca", "front-proxy-ca"):
        rows.append([name, *_expiry(3000), f"{'no':<8}"])
    return PREAMBLE + tabwriter(rows)


CERTS = {
    "admin.conf": (10.5, "ca", False),
    "apiserver": (100.2, "ca", False),
    "apiserver-etcd-client": (29.5, "etcd-ca", False),
    "front-proxy-client": (5.0, "front-proxy-ca", True),  # an external CA renews it
    "scheduler.conf": (364.9, "ca", False),
}


def test_check_expiration_reads_kubeadms_tables():
    run_all = RunAll({("kubeadm", "certs", "check-expiration"): ok(check_expiration_output(CERTS))})
    with _with(run_all):
        out = kubeadm_certs.check_expiration()
        kubeadm_certs.check_expiration(cert_dir="/srv/pki")
    assert run_all.calls == [
        ["kubeadm", "certs", "check-expiration"],
        ["kubeadm", "certs", "check-expiration", "--cert-dir=/srv/pki"],
    ]
    certs = {c["name"]: c for c in out["certificates"]}
    assert list(certs) == list(CERTS)
    assert certs["admin.conf"]["days_left"] == pytest.approx(10.5, abs=0.01)  # not "10d"
    assert certs["admin.conf"]["residual_time"] == "10d"
    assert certs["apiserver-etcd-client"]["ca"] == "etcd-ca"
    assert certs["front-proxy-client"]["externally_managed"] is True
    assert [a["name"] for a in out["authorities"]] == ["ca", "etcd-ca", "front-proxy-ca"]
    assert all(a["residual_time"] == "8y" for a in out["authorities"])


def test_expiring_lists_certificates_under_the_threshold_not_external_ones_or_cas():
    run_all = RunAll({("kubeadm", "certs", "check-expiration"): ok(check_expiration_output(CERTS))})
    with _with(run_all):
        assert kubeadm_certs.expiring(30) == ["admin.conf", "apiserver-etcd-client"]
        assert kubeadm_certs.expiring(10) == []
        assert kubeadm_certs.expiring("365") == [
            "admin.conf", "apiserver", "apiserver-etcd-client", "scheduler.conf"
        ]  # fmt: skip


def test_check_expiration_without_a_table_says_so():
    # e.g. a node where kubeadm finds no certificate directory at all
    with (
        _with(RunAll({("kubeadm", "certs"): ok(PREAMBLE)})),
        pytest.raises(CommandExecutionError, match="printed no table"),
    ):
        kubeadm_certs.check_expiration()


def test_a_missing_certificate_is_reported_not_a_crash():
    text = check_expiration_output(CERTS)
    rows = text.splitlines()
    # certs.go: fmt.Sprintf("!MISSING! %s\t\t\t\t", handler.Name), through the same tabwriter
    at = next(i for i, r in enumerate(rows) if r.startswith("apiserver "))
    rows[at] = "!MISSING! apiserver"
    with _with(RunAll({("kubeadm", "certs"): ok("\n".join(rows) + "\n")})):
        out = kubeadm_certs.check_expiration()
    # The others still parsed, and the missing one reported (in whatever shape), not dropped.
    assert {"admin.conf", "scheduler.conf"} <= {c["name"] for c in out["certificates"]}
    assert {"name": "apiserver", "missing": True} in out["certificates"]
    with _with(RunAll({("kubeadm", "certs"): ok("\n".join(rows) + "\n")})):
        assert "apiserver" not in kubeadm_certs.expiring(100000)  # renew cannot create it


def test_renew_each_name_in_order_and_stop_at_the_first_failure():
    run_all = RunAll(
        {
            ("kubeadm", "certs", "renew", "admin.conf"): ok(
                "certificate embedded in the kubeconfig file for the admin to use and for "
                "kubeadm itself renewed\n"
            ),
            ("kubeadm", "certs", "renew", "apiserver"): fails(
                "failed to renew certificate apiserver: open /etc/kubernetes/pki/ca.key: "
                "no such file or directory" + STACK_HINT
            ),
            ("kubeadm", "certs", "renew", "all"): ok("Done renewing certificates.\n"),
        }
    )
    with _with(run_all):
        assert kubeadm_certs.renew() == {"renewed": ["all"]}
        with pytest.raises(CommandExecutionError, match="ca.key: no such file"):
            kubeadm_certs.renew(["admin.conf", "apiserver", "scheduler.conf"])
    assert [c[3] for c in run_all.calls] == ["all", "admin.conf", "apiserver"]


# --- kubeadm_upgrade ------------------------------------------------------------------


@pytest.fixture
def node_dirs(tmp_path):
    """The node's paths under tmp_path: kubeha's config dir (the model's
    kubeha:kubeadm:config_dir, which holds the upgrade mark) and kubeadm's manifests."""
    kdir, manifests = tmp_path / "kubeadm", tmp_path / "manifests"
    SETTINGS["kubeha:kubeadm:config_dir"] = str(kdir)
    with patch.object(kubeadm_upgrade, "MANIFESTS", manifests):
        yield {"mark": kdir / "upgraded-to", "manifests": manifests}


def _upgrade(run_all: RunAll):
    return patch.dict(kubeadm_upgrade.__salt__, {"cmd.run_all": run_all})


def test_plan_runs_kubeadm_and_parses_every_offer():
    text = (SAMPLES / "kubeadm_upgrade_plan.txt").read_text()
    run_all = RunAll({("kubeadm", "upgrade", "plan"): ok(text)})
    with _upgrade(run_all):
        plans = kubeadm_upgrade.plan()
        kubeadm_upgrade.plan("v1.19.0")
    assert run_all.calls == [
        ["kubeadm", "upgrade", "plan"],
        ["kubeadm", "upgrade", "plan", "v1.19.0"],
    ]
    assert [p["target"] for p in plans] == ["v1.18.5", "v1.19.0"]
    kubelet = plans[0]["components"][0]
    assert kubelet == {
        "name": "kubelet",
        "node": "node1",
        "current": "v1.18.3",
        "target": "v1.18.5",
    }
    with _upgrade(RunAll({("kubeadm",): ok("Awesome, you're up-to-date! Enjoy!\n")})):
        assert kubeadm_upgrade.plan() == []


SUCCESS = (
    '\n[upgrade/successful] SUCCESS! Your cluster was upgraded to "v1.31.0". Enjoy!\n\n'
    "[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading "
    "your kubelets if you haven't already done so.\n"
)


def test_apply_runs_unattended_and_records_the_version(node_dirs):
    run_all = RunAll({("kubeadm", "upgrade", "apply"): ok(SUCCESS)})
    with _upgrade(run_all):
        ret = kubeadm_upgrade.apply("v1.31.0", config="/srv/upgrade.yaml", etcd_upgrade=False)
        kubeadm_upgrade.apply("v1.31.0", etcd_upgrade=False)
    # kubeadm refuses --etcd-upgrade mixed with --config: the UpgradeConfiguration says it.
    assert run_all.calls == [
        ["kubeadm", "upgrade", "apply", "v1.31.0", "--yes", "--config", "/srv/upgrade.yaml"],
        ["kubeadm", "upgrade", "apply", "v1.31.0", "--yes", "--etcd-upgrade=false"],
    ]  # fmt: skip
    assert ret["upgraded"] is True and ret["version"] == "v1.31.0"
    assert "SUCCESS! Your cluster was upgraded" in ret["output"]
    assert node_dirs["mark"].read_text() == "v1.31.0\n"
    assert kubeadm_upgrade.node_version() == "v1.31.0"  # no manifest here: the mark


def test_a_failed_apply_records_nothing(node_dirs):
    err = (
        "[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n\t"
        '- Specified version to upgrade to "v1.33.0" is at least one minor release higher '
        "than the kubeadm minor release (33 > 31). Such an upgrade is not supported\n" + STACK_HINT
    )
    with (
        _upgrade(RunAll({("kubeadm", "upgrade", "apply"): fails(err)})),
        pytest.raises(CommandExecutionError, match="at least one minor release higher"),
    ):
        kubeadm_upgrade.apply("v1.33.0")
    assert not node_dirs["mark"].exists()
    assert kubeadm_upgrade.node_version() is None


def test_node_records_kubeadms_own_version_when_none_is_given(node_dirs):
    run_all = RunAll(
        {
            ("kubeadm", "upgrade", "node"): ok(
                "[upgrade] The control plane instance for this node was successfully updated!\n"
            ),
            ("kubeadm", "version", "-o", "short"): ok("v1.31.0\n"),
        }
    )
    with _upgrade(run_all), patch.dict(kubeadm.__salt__, {"cmd.run_all": run_all}):
        ret = kubeadm_upgrade.node()
    assert run_all.calls == [["kubeadm", "upgrade", "node"], ["kubeadm", "version", "-o", "short"]]
    assert ret["upgraded"] is True
    assert node_dirs["mark"].read_text() == "v1.31.0\n"


def test_node_version_prefers_the_apiserver_manifest(node_dirs):
    node_dirs["mark"].parent.mkdir()
    node_dirs["mark"].write_text("v1.30.0\n")
    node_dirs["manifests"].mkdir()
    manifest = node_dirs["manifests"] / "kube-apiserver.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n"
        "    image: registry.k8s.io/kube-apiserver:v1.31.2\n    name: kube-apiserver\n"
    )
    assert kubeadm_upgrade.node_version() == "v1.31.2"
    manifest.write_text("apiVersion: v1\nkind: Pod\n")  # no image line: the mark
    assert kubeadm_upgrade.node_version() == "v1.30.0"
