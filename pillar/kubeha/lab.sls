# The lab cluster (lab/, `make lab-up`): the same schema as kubeha/example.sls; only
# addresses, the package mirror and timings differ. Everything lives in 198.18.0.0/24
# (RFC 2544 benchmarking range), inside network namespaces the lab creates.
kubeha:
  cluster:
    name: lab
  kubernetes:
    version: 1.30.0
    package_revision: '1.1'
  packages:
    # The lab's pkgs.k8s.io-shaped repositories, served from the host's bridge address.
    repo_base: http://198.18.0.1:8080/k8s
  control_plane:
    - {name: cp-1, ip: 198.18.0.11}
    - {name: cp-2, ip: 198.18.0.12}
    - {name: cp-3, ip: 198.18.0.13}
  vip:
    address: 198.18.0.10
    prefix: 24
    interface: ens160
    provider: keepalived-haproxy
    lb_port: 8443
  vrrp:
    router_id: 51
    version: 3
    advert_int: 0.2
  # The self-healing VIP with the formula's thresholds; only the waits are shorter, so the
  # lab tests see an override undone within seconds (tests/lab/test_vip_healing.py).
  vip_heal:
    cooldown: 15
    recover_after: 10
  upgrade:
    target_version: 1.31.0
  kubeadm:
    # Not the default (/etc/kubernetes/kubeadm): every lab build proves that the formula,
    # the modules and the orchestration follow kubeadm:config_dir.
    config_dir: /etc/kubeha/kubeadm
  # Chaos runs are allowed on the lab (never by default): `make chaos`, tests/lab/test_chaos.py.
  # The probe measures from the client machine (an operator's laptop); the power switch is
  # in chaos-lab.sls.
  chaos:
    enabled: true
    probe_minion: client
    probe_kubeconfig: /root/.kube/config
  # Prometheus on the client machine (orch.monitoring, tests/lab/test_monitoring.py); the
  # control planes open their metrics ports to the lab's network only.
  monitoring:
    enabled: true
    host: client
    listen_address: 198.18.0.100:9090
    # Shorter than the formula's 15s: the lab's alert test waits less.
    scrape_interval: 10s
    evaluation_interval: 10s
