"""kubeadm stand-in: init, join, token, upgrade, certs, reset, config validate, version."""
