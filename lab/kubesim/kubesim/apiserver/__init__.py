"""kube-apiserver stand-in: the REST API over real etcd, health checks, audit, metrics."""
