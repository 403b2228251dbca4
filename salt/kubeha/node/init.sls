# -*- coding: utf-8 -*-
# vim: ft=sls
# Node preparation kubeadm's preflight checks for (runbook step 1).
include:
  - .swap
  - .modules
  - .sysctl
