"""
Every refusal of the model: each bad pillar is refused with a message that names the pillar
key and says what to do instead. The example pillar (the runbook's cluster, corrected) is
the base; each case changes one thing.
"""

from __future__ import annotations

import pytest

# The runbook's literal kubeadm config (seed/runbook-en.md step 5): v1beta4 on kubeadm 1.30
# with map-style extraArgs.
RUNBOOK_KUBEADM_CONFIG = {
    "kubeadm": {
        "cluster_configuration": {
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "ClusterConfiguration",
            "kubernetesVersion": "v1.30.0",
            "controlPlaneEndpoint": "192.168.1.10:6443",
            "apiServer": {
                "extraArgs": {
                    "audit-log-maxage": "7",
                    "audit-log-maxbackup": "10",
                    "audit-log-maxsize": "100",
                    "audit-log-path": "/var/log/kubernetes/apiserver/audit.log",
                }
            },
        }
    }
}

CASES = {
    # name: (pillar change, [fragments every one of which the message must contain])
    "runbook kubeadm config: v1beta4 on 1.30": (
        RUNBOOK_KUBEADM_CONFIG,
        [
            "kubeha:kubeadm:cluster_configuration:apiVersion",
            "v1beta4 exists only from kubeadm v1.31",
            "v1beta3",
        ],
    ),
    "runbook kubeadm config: endpoint on the apiserver port": (
        RUNBOOK_KUBEADM_CONFIG,
        [
            "kubeha:kubeadm:cluster_configuration:controlPlaneEndpoint",
            "192.168.1.10:6443",
            "192.168.1.10:8443",
        ],
    ),
    "raw fragment with another Kubernetes version": (
        {"kubeadm": {"cluster_configuration": {"kubernetesVersion": "v1.29.0"}}},
        ["kubeha:kubeadm:cluster_configuration:kubernetesVersion", "v1.30.0"],
    ),
    "kubeadm_api v1beta4 asked on 1.30": (
        {"kubernetes": {"kubeadm_api": "v1beta4"}},
        ["kubeha:kubernetes:kubeadm_api", "v1.31", "auto"],
    ),
    "map extraArgs under v1beta4 on 1.31": (
        {
            "kubernetes": {"version": "1.31.0"},
            "upgrade": {"target_version": ""},
            "kubeadm": {"cluster_configuration": {"scheduler": {"extraArgs": {"v": "2"}}}},
        },
        [
            "kubeha:kubeadm:cluster_configuration:scheduler:extraArgs",
            "list of {name, value}",
            "[{name: v, value: '2'}]",
        ],
    ),
    "list extraArgs under v1beta3 on 1.30": (
        {
            "kubeadm": {
                "cluster_configuration": {"apiServer": {"extraArgs": [{"name": "v", "value": "2"}]}}
            }
        },
        ["kubeha:kubeadm:cluster_configuration:apiServer:extraArgs", "v1beta3", "map"],
    ),
    "runbook HAProxy on 0.0.0.0:6443 next to the apiserver": (
        {"vip": {"lb_port": 6443, "lb_bind": "all"}},
        ["kubeha:vip:lb_port", "6443", "8443", "lb_bind: vip"],
    ),
    "HAProxy on VIP:6443 while the apiserver binds all": (
        {"vip": {"lb_port": 6443, "lb_bind": "vip"}},
        ["kubeha:apiserver:bind_address", "bind_address: node"],
    ),
    "two control planes": (
        {
            "control_plane": [
                {"name": "cp-1", "ip": "192.168.1.11"},
                {"name": "cp-2", "ip": "192.168.1.12"},
            ]
        },
        ["kubeha:control_plane", "has 2 node(s)", "3, 5 or 7"],
    ),
    "four control planes": (
        {"control_plane": [{"name": f"cp-{i}", "ip": f"192.168.1.1{i}"} for i in range(1, 5)]},
        ["kubeha:control_plane", "has 4 node(s)", "odd"],
    ),
    "one control plane": (
        {"control_plane": [{"name": "cp-1", "ip": "192.168.1.11"}]},
        ["kubeha:control_plane", "has 1 node(s)"],
    ),
    "VIP outside the nodes' subnet": (
        {"vip": {"address": "192.168.2.10"}},
        ["kubeha:vip:address", "does not contain control plane cp-1", "subnet"],
    ),
    "VIP equal to a node IP": (
        {"vip": {"address": "192.168.1.12"}},
        ["kubeha:vip:address", "cp-2's address"],
    ),
    "VIP on the broadcast address": (
        {"vip": {"address": "192.168.1.255"}},
        ["kubeha:vip:address", "broadcast"],
    ),
    "duplicate node names": (
        {
            "control_plane": [
                {"name": "cp-1", "ip": "192.168.1.11"},
                {"name": "cp-1", "ip": "192.168.1.12"},
                {"name": "cp-3", "ip": "192.168.1.13"},
            ]
        },
        ["kubeha:control_plane:1:name", "cp-1 is listed twice"],
    ),
    "duplicate node IPs across roles": (
        {"workers": [{"name": "w-1", "ip": "192.168.1.13"}]},
        ["kubeha:workers:0:ip", "192.168.1.13 is used twice"],
    ),
    "node name not a DNS label": (
        {"workers": [{"name": "Worker_1", "ip": "192.168.1.21"}]},
        ["kubeha:workers:0:name", "DNS label"],
    ),
    "upgrade changes the major version": (
        {"upgrade": {"target_version": "2.0.0"}},
        ["kubeha:upgrade:target_version", "changes the major version", "Pick a 1.x target"],
    ),
    "upgrade goes backwards": (
        {"upgrade": {"target_version": "1.29.4"}},
        ["kubeha:upgrade:target_version", "older than the running 1.30.0"],
    ),
    "upgrade order misses a node": (
        {"upgrade": {"order": ["cp-2", "cp-1"]}},
        ["kubeha:upgrade:order", "every control plane exactly once"],
    ),
    "VRRPv2 fractional advert_int": (
        {"vrrp": {"version": 2, "advert_int": 0.5}},
        ["kubeha:vrrp:advert_int", "VRRPv2", "version: 3"],
    ),
    "down_timer_adverts not a whole number": (
        {"vrrp": {"down_timer_adverts": 2.5}},
        ["kubeha:vrrp:down_timer_adverts", "1-100"],
    ),
    "down_timer_adverts beyond keepalived's 100": (
        {"vrrp": {"down_timer_adverts": 101}},
        ["kubeha:vrrp:down_timer_adverts", "1-100"],
    ),
    "VRRPv3 advert_int below 10 ms": (
        {"vrrp": {"version": 3, "advert_int": 0.005}},
        ["kubeha:vrrp:advert_int", "0.01-40.95"],
    ),
    "missing VRRP secret": (
        {"vrrp": {"auth_pass": ""}},
        ["kubeha:vrrp:auth_pass", "missing", "secret pillar"],
    ),
    "VRRP secret longer than PASS auth uses": (
        {"vrrp": {"auth_pass": "0123456789"}},
        ["kubeha:vrrp:auth_pass", "first 8"],
    ),
    "router id out of range": (
        {"vrrp": {"router_id": 300}},
        ["kubeha:vrrp:router_id", "1-255"],
    ),
    "HAProxy fall window shorter than an etcd election": (
        {
            "etcd": {"election_timeout_ms": 2000},
            "haproxy": {"check": {"fall": 2, "fastinter": "100ms", "exclude": []}},
        },
        ["kubeha:haproxy:check", "fall window", "0.1 s", "etcd leader election", "4 s"],
    ),
    "HAProxy check without etcd while the apiservers use only their local member": (
        {
            "haproxy": {"check": {"exclude": ["etcd", "etcd-readiness"], "etcd_port": 0}},
            "apiserver": {"etcd_servers": "local"},
        },
        ["kubeha:haproxy:check:exclude", "etcd_servers: local", "docs/facts.md #9"],
    ),
    "apiservers on local-first etcd without HAProxy (kube-vip)": (
        {
            "vip": {"provider": "kube-vip", "lb_port": 6443},
            "apiserver": {"etcd_servers": "local-first"},
        },
        ["kubeha:apiserver:etcd_servers: local-first", "kube-vip", "Use local"],
    ),
    "the etcd proxy on etcd's metrics port": (
        {"apiserver": {"etcd_servers": "local-first"}, "haproxy": {"etcd_proxy": {"port": 2381}}},
        ["kubeha:haproxy:etcd_proxy:port: 2381", "etcd's metrics port"],
    ),
    "the etcd proxy on HAProxy's local frontend": (
        {"apiserver": {"etcd_servers": "local-first"}, "haproxy": {"etcd_proxy": {"port": 8404}}},
        ["kubeha:haproxy:etcd_proxy:port: 8404", "haproxy:local_port"],
    ),
    "the etcd proxy's check never rising": (
        {
            "apiserver": {"etcd_servers": "local-first"},
            "haproxy": {"etcd_proxy": {"check": {"rise": 0}}},
        },
        ["kubeha:haproxy:etcd_proxy:check:rise: 0", ">= 1"],
    ),
    "the etcd proxy's backup check interval not a duration": (
        {"haproxy": {"etcd_proxy": {"check": {"backup_inter": "often"}}}},
        ["kubeha:haproxy:etcd_proxy:check:backup_inter"],
    ),
    "apiserver shutdown delay shorter than HAProxy detection": (
        {"apiserver": {"shutdown_delay_seconds": 0.25}},
        ["kubeha:apiserver:shutdown_delay_seconds", "0.3 s", "docs/facts.md #10"],
    ),
    "renew deadline not below the lease duration": (
        {"leader_election": {"lease_duration": 5, "renew_deadline": 5, "retry_period": 1}},
        [
            "kubeha:leader_election:renew_deadline",
            "leaseDuration must be greater than renewDeadline",
        ],
    ),
    "retry period x 1.2 not below the renew deadline": (
        {"leader_election": {"lease_duration": 10, "renew_deadline": 3, "retry_period": 2.5}},
        ["kubeha:leader_election:retry_period", "x 1.2", "retryPeriod*JitterFactor"],
    ),
    "fractional lease duration": (
        {"leader_election": {"lease_duration": 4.5, "renew_deadline": 3, "retry_period": 1}},
        ["kubeha:leader_election:lease_duration", "whole seconds"],
    ),
    "renew deadline inside an etcd election": (
        {"leader_election": {"lease_duration": 2, "renew_deadline": 1.5, "retry_period": 0.5}},
        ["kubeha:leader_election:renew_deadline", "etcd leader election", "5/3/1"],
    ),
    "chaos on without a probe": (
        {"chaos": {"enabled": True}},
        ["kubeha:chaos:probe_minion", "outside the control plane"],
    ),
    "chaos probe on a control plane": (
        {"chaos": {"enabled": True, "probe_minion": "cp-2"}},
        ["kubeha:chaos:probe_minion", "cp-2 is a control plane"],
    ),
    "power switch that names no node": (
        {"chaos": {"power_off": ["/usr/bin/pdu", "off"], "power_on": ["/usr/bin/pdu", "on"]}},
        ["kubeha:chaos:power_off", "{node}"],
    ),
    "power switch off without on": (
        {"chaos": {"power_off": ["/usr/bin/pdu", "{node}", "off"]}},
        ["kubeha:chaos:power_off/power_on", "set both"],
    ),
    "power switch by a relative command": (
        {"chaos": {"power_off": ["ipmitool", "{node}"], "power_on": ["ipmitool", "{node}"]}},
        ["kubeha:chaos:power_off", "absolute path"],
    ),
    "SLO for an unknown scenario": (
        {"slo": {"meteor": {"failed": 0}}},
        ["kubeha:slo:meteor", "not a scenario"],
    ),
    "SLO goal that is not a number": (
        {"slo": {"power-off": {"stall_s": "fast"}}},
        ["kubeha:slo:power-off:stall_s", "number >= 0"],
    ),
    "probe rate out of range": (
        {"probe": {"rate": 0}},
        ["kubeha:probe:rate", "0.1 to 200"],
    ),
    "probe timeout inside HAProxy's connect timeout": (
        {"probe": {"timeout": 1}, "haproxy": {"timeouts": {"connect": "2s"}}},
        ["kubeha:probe:timeout", "connect timeout"],
    ),
    "a DOWN server's sessions cut before its pending connects could be retried": (
        {"haproxy": {"cut_sessions_after_down": "50ms"}},
        ["kubeha:haproxy:cut_sessions_after_down", "connect timeout", "at least 0.2s"],
    ),
    "a session cut delay that is not a duration": (
        {"haproxy": {"cut_sessions_after_down": 150}},
        ["kubeha:haproxy:cut_sessions_after_down", "not a duration"],
    ),
    "kube-vip with an LB port other than the apiserver's": (
        {"vip": {"provider": "kube-vip", "lb_port": 8443}},
        ["kubeha:vip:lb_port", "kube-vip", "6443"],
    ),
    "pod subnet overlapping the nodes' subnet": (
        {"network": {"pod_subnet": "192.168.0.0/16"}},
        ["kubeha:network:pod_subnet", "overlaps the nodes' subnet"],
    ),
    "unknown VIP provider": (
        {"vip": {"provider": "metallb"}},
        ["kubeha:vip:provider", "keepalived-haproxy", "kube-vip"],
    ),
    "containerd schema": (
        {"containerd": {"config_version": 1}},
        ["kubeha:containerd:config_version", "SystemdCgroup"],
    ),
    "OIDC over plain HTTP": (
        {"apiserver": {"oidc": {"issuer_url": "http://idp.example", "client_id": "k8s"}}},
        ["kubeha:apiserver:oidc:issuer_url", "https://"],
    ),
    "extra_args given as a list": (
        {"apiserver": {"extra_args": [{"name": "v", "value": "2"}]}},
        ["kubeha:apiserver:extra_args", "mapping"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_is_refused_with_key_and_fix(salt_funcs, example, model_with, case):
    change, fragments = CASES[case]
    problems = salt_funcs["kubeha_model.check"](model_with(example, change))
    matching = [p for p in problems if all(f in p for f in fragments)]
    assert matching, f"{case}: no message has all of {fragments}; got {problems}"


def test_validate_raises_with_every_problem_listed(salt_funcs, example, model_with):
    from salt.exceptions import CommandExecutionError

    model = model_with(example, {"vip": {"lb_port": 6443}, "vrrp": {"auth_pass": ""}})
    with pytest.raises(CommandExecutionError) as err:
        salt_funcs["kubeha_model.validate"](model)
    text = str(err.value)
    assert "2 problem(s); nothing was changed" in text
    assert "kubeha:vip:lb_port" in text and "kubeha:vrrp:auth_pass" in text


ACCEPTED = {
    "VRRPv3 sub-second adverts without a secret": {
        "vrrp": {"version": 3, "advert_int": 0.2, "auth_pass": ""}
    },
    "HAProxy on VIP:6443 with apiservers on their node IPs": {
        "vip": {"lb_port": 6443, "lb_bind": "vip"},
        "apiserver": {"bind_address": "node"},
    },
    "five control planes": {
        "control_plane": [{"name": f"cp-{i}", "ip": f"192.168.1.1{i}"} for i in range(1, 6)]
    },
    "kube-vip on the apiserver port, kubeadm's local etcd": {
        "vip": {"provider": "kube-vip", "lb_port": 6443},
        "apiserver": {"etcd_servers": "local"},
    },
    "a patch release inside the minor": {"upgrade": {"target_version": "1.30.5"}},
    # orch.upgrade goes there one minor at a time (hops): kubeadm itself never skips one.
    "a target two minors ahead": {"upgrade": {"target_version": "1.32.0"}},
    "v1beta4 with list extraArgs on 1.31": {
        "kubernetes": {"version": "1.31.0"},
        "upgrade": {"target_version": ""},
        "kubeadm": {
            "cluster_configuration": {"scheduler": {"extraArgs": [{"name": "v", "value": "2"}]}}
        },
    },
    "chaos allowed, probed from a client, with a power switch": {
        "chaos": {
            "enabled": True,
            "probe_minion": "bastion.example.com",
            "power_off": ["/usr/local/sbin/pdu", "--outlet={node}", "off"],
            "power_on": ["/usr/local/sbin/pdu", "--outlet={node}", "on"],
        },
        "slo": {"netem": {"ttfb_p95_ms": 500}, "leader-kill": {"leader_failover_s": 7}},
    },
    "the runbook's access layer (TCP check, VRRPv2)": {
        "haproxy": {"check": {"kind": "tcp", "exclude": [], "inter": "2s", "fall": 3}},
        "vrrp": {"version": 2, "advert_int": 1},
    },
    "every apiserver on every etcd member, etcd left out of the check": {
        "apiserver": {"etcd_servers": "all"},
        "haproxy": {"check": {"exclude": ["etcd", "etcd-readiness"], "etcd_port": 0}},
    },
    "every apiserver on its own etcd member first, through its node's HAProxy": {
        "apiserver": {"etcd_servers": "local-first"},
        "haproxy": {"check": {"exclude": ["etcd", "etcd-readiness"], "etcd_port": 0}},
    },
    "HAProxy's own immediate cut of a DOWN server's sessions": {
        "haproxy": {"cut_sessions_after_down": "0s"}
    },
    "upstream leader-election defaults": {
        "leader_election": {"lease_duration": 15, "renew_deadline": 10, "retry_period": 2}
    },
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_good_variations_are_accepted(salt_funcs, example, model_with, case):
    assert salt_funcs["kubeha_model.check"](model_with(example, ACCEPTED[case])) == []
