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
