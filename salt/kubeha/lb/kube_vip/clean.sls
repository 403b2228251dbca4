# -*- coding: utf-8 -*-
# vim: ft=sls
# The kubelet stops the pod (and kube-vip releases the VIP) when the manifest goes.
kubeha-lb-kube-vip-clean-manifest-absent:
  file.absent:
    - name: /etc/kubernetes/manifests/kube-vip.yaml
