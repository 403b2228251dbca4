# A lab profile: kubeha's defaults except that etcd elects its leader alone
# (vip_heal:move_etcd_leader: false, the default before 2026-11-29). `make chaos`
# (lab/chaos.py, part etcd-elects) measures B and C with etcd's leader on the VIP holder,
# the case the default avoids, beside the kubeha part's rows.
kubeha:
  vip_heal:
    move_etcd_leader: false
