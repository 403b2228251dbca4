"""netem's tc backend with the real tc, in a namespace of ours (khm-tc).

A kernel has sch_netem or not, so the real tc can exercise one branch per machine (this
CI kernel has none: the clear error and auto's fallback to nfqueue). What keeps both
branches honest on every kernel: which branch runs is decided by tc itself, asked here
without the module, and the module's own verdict (kernel_has_netem) must agree with it;
the branch this kernel cannot run is covered against tc's recorded answers in
tests/unit/modules/test_netem_unit.py (test_tc_backend_on_a_kernel_with_netem,
test_kernel_without_netem_gives_the_fix).
"""

import pytest
from khm_support import loaders, netns_delete, netns_exec, sh
from salt.exceptions import CommandExecutionError

from tests.conftest import require_binary

pytestmark = pytest.mark.root

NS = "khm-tc"


@pytest.fixture
def salt(tmp_path, request):
    require_binary("tc")
    netns_delete(NS)
    request.addfinalizer(lambda: netns_delete(NS))
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    sh("ip", "-n", NS, "link", "set", "d0", "up")
    return loaders(tmp_path, netem={"state_dir": str(tmp_path / "state")}).modules


def _tc_can_add_netem() -> tuple[bool, str]:
    """The kernel's answer, not the module's: does a plain `tc qdisc add ... netem` work?"""
    res = netns_exec(NS, "tc", "qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms",
                     check=False)  # fmt: skip
    if res.returncode == 0:
        netns_exec(NS, "tc", "qdisc", "del", "dev", "d0", "root")
    return res.returncode == 0, res.stderr.strip()


def test_kernel_has_netem_agrees_with_tc(salt):
    works, err = _tc_can_add_netem()
    has = salt.netem.kernel_has_netem()
    assert has["available"] is works, (has, err)
    if not works:
        # iproute2's answer when the kernel has no such qdisc (tc/tc_qdisc.c, EINVAL/ENOENT)
        assert "Specified qdisc kind is unknown" in err, err
        assert "linux-modules-extra-" in has["reason"] and "backend=nfqueue" in has["reason"]


def test_tc_backend_on_this_kernel(salt):
    works, _ = _tc_can_add_netem()
    if works:
        ret = salt.netem.add("d0", delay="200ms", jitter="20ms", loss=20, backend="tc", netns=NS)
        assert ret["command"][-5:] == ["delay", "200ms", "20ms", "loss", "20%"]
        shown = salt.netem.show("d0", netns=NS)
        assert shown["backend"] == "tc" and shown["qdisc"]["delay"] == 200.0
        assert shown["qdisc"]["jitter"] == 20.0 and shown["qdisc"]["loss"] == 20.0
        listed = netns_exec(NS, "tc", "qdisc", "show", "dev", "d0").stdout
        assert "qdisc netem" in listed and "delay 200ms" in listed, listed
        assert salt.netem.clear("d0", netns=NS)["removed"] == ["tc qdisc"]
        assert "qdisc netem" not in netns_exec(NS, "tc", "qdisc", "show", "dev", "d0").stdout
        auto = "tc"
    else:
        with pytest.raises(CommandExecutionError) as err:
            salt.netem.add("d0", delay="200ms", loss=20, backend="tc", netns=NS)
        text = str(err.value)
        assert "Specified qdisc kind is unknown" in text and "no sch_netem" in text
        assert "backend=nfqueue" in text
        assert salt.netem.show("d0", netns=NS)["active"] is False
        auto = "nfqueue"
    # auto takes tc where the kernel has netem, the userspace backend where it has not
    require_binary("iptables")
    ret = salt.netem.add("d0", delay=50, backend="auto", duration=30, netns=NS)
    try:
        assert ret["backend"] == auto
    finally:
        removed = salt.netem.clear("d0", netns=NS)["removed"]
    assert removed == (["tc qdisc"] if auto == "tc" else ["nfqueue daemon"])
