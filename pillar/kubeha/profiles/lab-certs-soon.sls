# A lab profile: certificates count as expiring a year ahead, checked every 5 s, so the
# kubeha_certs beacon fires at once on every control plane (the lab's certificates have a
# year less the cluster's age). tests/lab/test_day2_maintenance.py sets the grain
# kubeha_profile=certs-soon on the control planes, applies kubeha.day2 and watches the
# beacon -> reactor -> orch.certs_renew chain renew all three, once, under the probe.
kubeha:
  certs:
    renew_before_days: 365
    check_interval: 5
