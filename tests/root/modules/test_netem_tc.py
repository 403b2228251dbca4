"""netem's tc backend with the real tc, in a namespace of ours (khm-tc).

This CI kernel has no sch_netem: the test asserts the clear error and that auto picks
nfqueue. On a kernel with netem, the same test asserts the qdisc is applied and parsed.
"""

import pytest
from khm_support import loaders, netns_delete, sh
from salt.exceptions import CommandExecutionError

pytestmark = pytest.mark.root

NS = "khm-tc"


@pytest.fixture
def salt(tmp_path, request):
    netns_delete(NS)
    request.addfinalizer(lambda: netns_delete(NS))
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    sh("ip", "-n", NS, "link", "set", "d0", "up")
    return loaders(tmp_path, netem={"state_dir": str(tmp_path / "state")}).modules


def test_tc_backend_on_this_kernel(salt):
    has = salt.netem.kernel_has_netem()
    if has["available"]:
        ret = salt.netem.add("d0", delay="200ms", jitter="20ms", loss=20, backend="tc", netns=NS)
        assert ret["command"][-5:] == ["delay", "200ms", "20ms", "loss", "20%"]
        shown = salt.netem.show("d0", netns=NS)
        assert shown["backend"] == "tc" and shown["qdisc"]["delay"] == 200.0
        assert salt.netem.clear("d0", netns=NS)["removed"] == ["tc qdisc"]
        return
    assert "linux-modules-extra-" in has["reason"]
    with pytest.raises(CommandExecutionError) as err:
        salt.netem.add("d0", delay="200ms", loss=20, backend="tc", netns=NS)
    text = str(err.value)
    assert "Specified qdisc kind is unknown" in text and "no sch_netem" in text
    assert "backend=nfqueue" in text
    assert salt.netem.show("d0", netns=NS)["active"] is False
    # auto falls back to the userspace backend on this kernel
    ret = salt.netem.add("d0", delay=50, backend="auto", duration=30, netns=NS)
    try:
        assert ret["backend"] == "nfqueue"
    finally:
        assert salt.netem.clear("d0", netns=NS)["removed"] == ["nfqueue daemon"]
