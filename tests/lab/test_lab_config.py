"""The lab's fixed shape, checked without root: names, addresses, host config parsing."""

from __future__ import annotations

import ipaddress

import pytest

from lab import config, hostenv, machine


def test_topology_addresses_follow_the_contract():
    machines = config.topology(workers=2, client=True)
    assert [(m.name, m.ip, m.role) for m in machines] == [
        ("cp-1", "198.18.0.11", "control-plane"),
        ("cp-2", "198.18.0.12", "control-plane"),
        ("cp-3", "198.18.0.13", "control-plane"),
        ("w-1", "198.18.0.21", "worker"),
        ("w-2", "198.18.0.22", "worker"),
        ("client", "198.18.0.100", "client"),
    ]
    network = ipaddress.ip_network(config.NETWORK)
    everyone = config.topology(workers=50, client=True)
    ips = [m.ip for m in everyone]
    assert len(set(ips)) == len(ips)
    assert config.VIP not in ips and config.HOST_IP not in ips
    assert all(ipaddress.ip_address(ip) in network for ip in [*ips, config.VIP, config.HOST_IP])


def test_every_lab_name_is_kha_prefixed_and_fits_a_link_name():
    for m in config.topology(workers=50, client=True):
        for name in (m.netns, m.host_veth, m.cgroup):
            assert name.startswith("kha-")
            assert len(name) <= 15, name  # IFNAMSIZ - 1
    assert config.BRIDGE == "kha-br0"


def test_machine_names_round_trip_and_reject_strangers():
    for m in config.topology(workers=3, client=True):
        assert config.machine_from_name(m.name) == m
    for bad in ("cp-4", "cp-0", "w-0", "khm-cp-1", "kubesim-cp-1", "cp-x", ""):
        with pytest.raises(ValueError):
            config.machine_from_name(bad)


def test_macs_are_unique_and_locally_administered():
    macs = [m.mac for m in config.topology(workers=50, client=True)]
    assert len(set(macs)) == len(macs)
    assert all(int(mac.split(":")[0], 16) & 0b10 for mac in macs)


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_sources_keep_fields_across_comment_lines():
    entries = hostenv._deb822_entries(DEB822)
    assert len(entries) == 2
    assert entries[0]["uris"] == "http://mirror.example/debian"
    assert entries[0]["components"] == "main"


def test_one_line_sources_drop_options():
    entries = hostenv._one_line_entries(
        "deb [signed-by=/k.gpg arch=amd64] http://m.example/debian bookworm main contrib\n"
        "# deb http://commented.example/debian bookworm main\n"
    )
    assert entries == [
        {
            "types": "deb",
            "uris": "http://m.example/debian",
            "suites": "bookworm",
            "components": "main contrib",
        }
    ]


def test_debian_mirror_is_read_from_the_host(monkeypatch):
    monkeypatch.setattr(
        hostenv,
        "host_sources",
        lambda: hostenv._deb822_entries(DEB822),
    )
    assert hostenv.debian_mirror().uri == "http://mirror.example/debian"
    monkeypatch.setattr(hostenv, "host_sources", lambda: [])
    with pytest.raises(hostenv.LabError, match="no apt source"):
        hostenv.debian_mirror()


def test_machine_files_point_only_at_the_lab():
    cp1 = config.machine_from_name("cp-1")
    hosts = machine.hosts_file(config.topology(client=True))
    assert "198.18.0.11\tcp-1" in hosts and "198.18.0.100\tclient" in hosts
    assert "198.18.0.1\tlab-host salt" in hosts
    minion = machine.minion_config(cp1)
    assert "master: 198.18.0.1\n" in minion and "id: cp-1\n" in minion
    assert machine.machine_id(cp1) != machine.machine_id(config.machine_from_name("cp-2"))
    assert len(machine.machine_id(cp1)) == 32


def test_master_config_includes_the_repos_reactors(tmp_path, monkeypatch):
    from lab import saltmaster

    monkeypatch.setattr(saltmaster, "REACTORS", tmp_path / "absent.yaml")
    assert "reactor" not in saltmaster.config()
    reactors = tmp_path / "reactors.yaml"
    reactors.write_text("- 'kubeha/vrrp/*':\n    - salt://reactor/vip.sls\n")
    monkeypatch.setattr(saltmaster, "REACTORS", reactors)
    cfg = saltmaster.config()
    assert cfg["reactor"] == [{"kubeha/vrrp/*": ["salt://reactor/vip.sls"]}]
    assert cfg["interface"] == "198.18.0.1" and cfg["auto_accept"] is False
    assert str(cfg["pki_dir"]).startswith(str(config.STATE))
    reactors.write_text("kubeha/vrrp/*: salt://reactor/vip.sls\n")
    with pytest.raises(saltmaster.LabError, match="YAML list"):
        saltmaster.config()
