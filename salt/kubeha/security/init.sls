# -*- coding: utf-8 -*-
# vim: ft=sls
# The cluster's security objects (runbook step 11), kept through the API from the init node
# once the cluster exists: the admission policy refusing unpinned images, and the teams'
# RBAC (security:teams: ClusterRoles, ClusterRoleBindings, RoleBindings). Every kubectl
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
{%- else %}
{%- set rbac = salt['kubeha_rbac.rbac_objects'](kubeha) %}

# The teams' RBAC. With teams the objects are applied, then what kubeha made for teams no
# longer in pillar (selector: managed-by=kubeha + kubeha.io/part=rbac; RoleBindings in every
# namespace) is deleted. With no team the step still runs, prune-only: four bounded label-
# selected lists (empty on a cluster that never had teams, kubesim included), and the only
# way the last team's objects go when the last team leaves pillar. Namespaces are not made
# here: a RoleBinding for a namespace that does not exist fails this step naming it
# (docs/pillar.md, security:teams).
kubeha-security-rbac-applied:
  kube_objects.applied:
    - objects: {{ rbac | json }}
    - kubeconfig: {{ admin_conf }}
    - prune: {{ salt['kubeha_rbac.prune'](kubeha) | json }}
    - onlyif: test -e {{ admin_conf }}
{%-   if salt['kubeha_security.admission_served'](kubeha) %}

kubeha-security-admission-applied:
  kube_objects.applied:
    - objects: {{ salt['kubeha_security.admission_objects'](kubeha) | json }}
    - kubeconfig: {{ admin_conf }}
    # Objects kubeha made that the model no longer wants (admission turned off) go.
    - prune:
        selector: app.kubernetes.io/managed-by=kubeha
        resources: [validatingadmissionpolicies, validatingadmissionpolicybindings]
    - onlyif: test -e {{ admin_conf }}
{%-   else %}

kubeha-security-admission-unavailable:
  test.show_notification:
    - text: "kubeha:security:admission: ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) is served from Kubernetes 1.30; this cluster runs {{ kubeha.kubernetes.version }}: no image policy."
{%-   endif %}
{%- endif %}
