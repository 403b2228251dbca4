# The runbook's cluster (seed/runbook-en.md), corrected per docs/facts.md:
# - kubeadm 1.30 reads kubeadm.k8s.io/v1beta3 (v1beta4 only from 1.31)      [docs/facts.md #1]
# - HAProxy listens on 8443, not 6443 next to the apiserver                   [docs/facts.md #6]
# - HAProxy checks GET /readyz over TLS instead of a TCP connect             [docs/facts.md #9]
# - containerd gets SystemdCgroup = true                                      [docs/facts.md #4]
# - the audit policy file exists and is mounted into the apiserver            [docs/facts.md #5]
# - VRRP uses unicast peers (the runbook's "multicast blocked" pitfall)
# - leader election 5/3/1 s: the safe floor for the runbook's fast failover  [docs/facts.md, Timings]
kubeha:
  cluster:
    name: prod-cp
  kubernetes:
    version: 1.30.0
    package_revision: '1.1'
  control_plane:
    - {name: cp-1, ip: 192.168.1.11}
    - {name: cp-2, ip: 192.168.1.12}
    - {name: cp-3, ip: 192.168.1.13}
  vip:
    address: 192.168.1.10
    prefix: 24
    interface: ens160
    provider: keepalived-haproxy
    lb_port: 8443
  vrrp:
    router_id: 51
    version: 2
    advert_int: 1
  network:
    pod_subnet: 10.244.0.0/16
  leader_election:
    lease_duration: 5
    renew_deadline: 3
    retry_period: 1
  apiserver:
    audit:
      max_age: 7
      max_backup: 10
      max_size: 100
  upgrade:
    target_version: 1.31.0
