# A lab profile: OIDC users through the VIP (tests/lab/test_security_oidc.py). The issuer runs
# on the lab host's bridge address during the test; its CA is copied to the control planes
# there. The apiservers' flags are what kubeadm renders from apiserver:oidc (the test sets
# them in the static pods, as an upgrade would), and the teams' RBAC is kubeha.security's.
kubeha:
  apiserver:
    oidc:
      issuer_url: https://198.18.0.1:8446
      client_id: kubernetes
      ca_file: /etc/kubernetes/pki/oidc-ca.crt
  security:
    teams:
      team-a:                    # may read the whole cluster, change nothing
        groups: ['oidc:team-a']
        cluster_roles: [view]
      team-b:                    # may edit ConfigMaps in one namespace only
        groups: ['oidc:team-b']
        namespaces: {kubeha-oidc-test: [edit]}
