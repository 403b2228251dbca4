# One master, many clusters: each minion carries the grain `kubeha_cluster` naming its
# cluster (set in /etc/salt/grains or minion config), and gets that cluster's pillar.
# Add a block per cluster you manage.
base:
  'kubeha_cluster:example':
    - match: grain
    - kubeha.example
    - kubeha.example-secrets
  'kubeha_cluster:lab':
    - match: grain
    - kubeha.lab
    - kubeha.chaos-lab
    - kubeha.day2-lab
  # Lab profiles: a grain on the lab's machines picks one (see each file).
  'G@kubeha_cluster:lab and G@kubeha_profile:vrrp2':
    - match: compound
    - kubeha.profiles.lab-vrrp2
  'G@kubeha_cluster:lab and G@kubeha_profile:v1-29':
    - match: compound
    - kubeha.profiles.lab-v1-29
  'G@kubeha_cluster:lab and G@kubeha_profile:gce-flag':
    - match: compound
    - kubeha.profiles.lab-gce-flag
  # make chaos: the runbook's own access layer, measured against kubeha's (lab/chaos.py).
  'G@kubeha_cluster:lab and G@kubeha_profile:runbook':
    - match: compound
    - kubeha.profiles.lab-runbook
  'G@kubeha_cluster:lab and G@kubeha_profile:etcd-elects':
    - match: compound
    - kubeha.profiles.lab-etcd-elects
  'G@kubeha_cluster:lab and G@kubeha_profile:chaos-off':
    - match: compound
    - kubeha.profiles.lab-chaos-off
  'G@kubeha_cluster:lab and G@kubeha_profile:certs-soon':
    - match: compound
    - kubeha.profiles.lab-certs-soon
  'G@kubeha_cluster:lab and G@kubeha_profile:oidc':
    - match: compound
    - kubeha.profiles.lab-oidc
