"""Output formats the _modules parse: Go tabwriter tables, durations, join commands."""

from __future__ import annotations

import datetime as dt

from kubesim import tabwriter
from kubesim.humanize import human_duration, units_human_duration
from kubesim.kubeadm.certs import short_human_duration
from kubesim.kubeadm.common import join_command


def test_tabwriter_matches_kubeadm_check_expiration_layout():
    # Rows as cmd/kubeadm/app/cmd/certs.go prints them; expected text from a real kubeadm run.
    text = (
        "CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED\n"
        "admin.conf\tApr 01, 2024 16:06 UTC\t347d\tca\tno      \n"
        "apiserver-kubelet-client\tApr 01, 2024 16:06 UTC\t347d\tca\tno      \n"
    )
    assert tabwriter.render(text, 10, 3).splitlines() == [
        "CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED",  # noqa: E501 - upstream's text
        "admin.conf                 Apr 01, 2024 16:06 UTC   347d            ca                      no      ",  # noqa: E501 - upstream's text
        "apiserver-kubelet-client   Apr 01, 2024 16:06 UTC   347d            ca                      no      ",  # noqa: E501 - upstream's text
    ]


def test_tabwriter_blocks_end_at_lines_without_cells():
    out = tabwriter.render("a\tbb\nccc\td\n\nx\ty\n", 1, 1).splitlines()
    assert out == ["a   bb", "ccc d", "", "x y"]


def test_crictl_table_min_width_20():
    out = tabwriter.table(
        [["CONTAINER", "IMAGE", "NAME"], ["0123456789abc", "deadbeef12345", "etcd"]], 20, 3
    )
    assert out.splitlines()[0] == "CONTAINER           IMAGE               NAME"
    assert out.splitlines()[1] == "0123456789abc       deadbeef12345       etcd"


def test_durations_like_go():
    assert short_human_duration(dt.timedelta(days=364, hours=23)) == "364d"
    assert short_human_duration(dt.timedelta(days=3649)) == "9y"
    assert short_human_duration(dt.timedelta(minutes=90)) == "1h"
    assert human_duration(95) == "95s"
    assert human_duration(150) == "2m30s"
    assert human_duration(3 * 3600 + 600) == "3h10m"
    assert units_human_duration(0.2) == "Less than a second"
    assert units_human_duration(75) == "About a minute"
    assert units_human_duration(600) == "10 minutes"


def test_join_command_template():
    text = join_command("198.18.0.10:8443", "abcdef.0123456789abcdef", "sha256:00", True, "k" * 64)
    assert text == (
        "kubeadm join 198.18.0.10:8443 --token abcdef.0123456789abcdef \\\n"
        "\t--discovery-token-ca-cert-hash sha256:00 \\\n\t--control-plane --certificate-key "
        + "k"
        * 64
    )
    worker = join_command("198.18.0.10:8443", "abcdef.0123456789abcdef", "sha256:00")
    assert worker.endswith("--discovery-token-ca-cert-hash sha256:00 ")
