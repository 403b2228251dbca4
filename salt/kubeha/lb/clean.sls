# -*- coding: utf-8 -*-
# vim: ft=sls
include:
  - .keepalived.clean
  - .haproxy.clean
  - .kube_vip.clean
