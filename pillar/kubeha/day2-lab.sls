# The lab's day-2 settings: its object store, secrets and shorter pauses. lab/s3server.py runs
# moto's S3 server on the bridge with this bucket and these credentials (a test checks that
# both agree). On a real site these three secrets live in an encrypted pillar
# (example-secrets.sls shows the shape) and the endpoint is AWS S3, MinIO or Ceph RGW
# (docs/s3.md).
kubeha:
  backup:
    s3:
      endpoint: http://198.18.0.1:9000
      region: us-east-1
      bucket: kubeha-lab
      prefix: kubeha
      addressing_style: path
      access_key: kubeha-lab-access
      secret_key: kubeha-lab-secret-0123456789
      # Small parts so that the lab's few-MB snapshots go up in several.
      multipart_threshold_mb: 5
      multipart_chunk_mb: 5
    # Lab only: a fixed key, so a restore after `python -m lab down` can still decrypt.
    pki_key: 3l4bK1u2Yc9v5o0Qm8rTq7Ww6eE5Rr4Tt3Yy2Uu1Ii0=
  drill:
    # kubesim ships etcd 3.5's etcd/etcdutl where a real node has them in the etcd image
    # (the kubelet runs registry.k8s.io/etcd from there: docs/kubesim.md).
    etcd_dir: /usr/lib/kubesim/images/etcd
  # A toy cluster's members defragment in milliseconds and its apiservers restart in
  # seconds: shorter pauses and drains keep tests/lab/test_day2_*.py within CI's budget.
  defrag:
    pause: 2
    drain: 2
  certs:
    pause: 2
    drain: 2
