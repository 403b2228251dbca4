# A lab profile: the runbook's own access layer (docs/runbook.md steps 3-4) on the corrected
# port, so `make chaos` measures it against kubeha's on the same machine and cluster. Picked
# by the grain kubeha_profile=runbook (pillar/top.sls); lab/chaos.py sets it, applies the
# formula, and also gives the static pods the runbook's kubeadm defaults (local etcd only,
# leader election 15/10/2), which this pillar cannot change on a built cluster.
# - keepalived: VRRPv2, advert_int 1, PASS authentication, priority 100 (then 99, 98), the
#   runbook's `state BACKUP` without nopreempt (a recovered node takes the VIP back);
# - HAProxy: `tcp-check connect` at HAProxy's default timings (inter 2 s, fall 3, rise 2),
#   timeout connect 5 s, client/server 60 s, retries 3 and no redispatch (HAProxy's
#   defaults: the runbook sets neither), round robin.
# kubeha keeps its track script and notify hook in this profile: neither fires in the chaos
# scenarios (HAProxy stays up with at least one backend).
kubeha:
  # The runbook has no self-healing VIP (and with preemption kubeha's could not undo an
  # override without moving the VIP back): its beacon is removed in this profile, and
  # HAProxy binds as the runbook's does (no `transparent`, no divert unit).
  vip_heal:
    mode: 'off'
    handover_s: 0
  vrrp:
    version: 2
    advert_int: 1
    auth_pass: Rb-9kLm2
    priority_base: 100
    priority_step: 1
    nopreempt: false
  haproxy:
    balance: roundrobin
    timeouts:
      connect: 5s
      client: 60s
      server: 60s
    retries: 3
    redispatch: 0
    # HAProxy's own on-marked-down shutdown-sessions, as this profile was first measured with
    # (the runbook cuts nothing; kubeha's delayed cut needs at least timeout connect).
    cut_sessions_after_down: 0s
    check:
      kind: tcp
      exclude: []
      inter: 2s
      fastinter: 2s
      downinter: 2s
      fall: 3
      rise: 2
      timeout: 2s
