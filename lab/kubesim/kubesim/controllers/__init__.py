"""kube-controller-manager and kube-scheduler stand-ins (leader-elected workers)."""
