# A lab profile: the self-healing VIP also keeps etcd's leader off the VIP holder and off
# impaired nodes (vip_heal:move_etcd_leader, off by default until soaked). `make chaos`
# (lab/chaos.py, part etcd-leader) measures B and C with it beside kubeha's defaults.
kubeha:
  vip_heal:
    move_etcd_leader: true
