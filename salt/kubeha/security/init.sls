# -*- coding: utf-8 -*-
# vim: ft=sls
# The cluster's security objects (runbook step 11), kept through the API from the init node
# once the cluster exists: the admission policy refusing unpinned images. Every kubectl
# call is bounded (kube_objects: --request-timeout and a command timeout); an object that
# already has every field kubeha sets is left alone, so a second run changes nothing.
# Part of highstate on control planes; before `kubeadm init` (no admin.conf) it waits.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set admin_conf = '/etc/kubernetes/admin.conf' %}
{%- if not kubeha.derived.is_init_node %}

kubeha-security-from-init-node:
  test.show_notification:
    - text: "kubeha.security is applied from the init node {{ kubeha.derived.init_node }}."
{%- elif salt['kubeha_security.admission_served'](kubeha) %}

kubeha-security-admission-applied:
  kube_objects.applied:
    - objects: {{ salt['kubeha_security.admission_objects'](kubeha) | json }}
    - kubeconfig: {{ admin_conf }}
    # Objects kubeha made that the model no longer wants (admission turned off) go.
    - prune:
        selector: app.kubernetes.io/managed-by=kubeha
        resources: [validatingadmissionpolicies, validatingadmissionpolicybindings]
    - onlyif: test -e {{ admin_conf }}
{%- else %}

kubeha-security-admission-unavailable:
  test.show_notification:
    - text: "kubeha:security:admission: ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) is served from Kubernetes 1.30; this cluster runs {{ kubeha.kubernetes.version }}: no image policy."
{%- endif %}
