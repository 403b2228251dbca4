# A lab profile: the lab cluster with VRRPv2 and PASS authentication, as many sites run
# keepalived. Picked by the grain kubeha_profile=vrrp2 on the lab's machines (pillar/top.sls);
# tests/lab/test_bootstrap.py builds the cluster with it to prove that the VRRP secret, the
# bootstrap token and the certificate key never reach the job cache, a log or the event bus.
# A lab-only secret: a real one lives in an encrypted pillar (see example-secrets.sls).
kubeha:
  vrrp:
    version: 2
    advert_int: 1
    auth_pass: Lb2-q7Zx
