# The lab's power switch for the power-off chaos scenario: the master runs this checkout's
# `python -m lab fault <node> power-off|power-on` (lab/faults.py: cable out and PID 1
# SIGKILLed; power-on boots the same disk). The checkout is found from the master's own
# pillar_roots (<checkout>/pillar). On a real site this is an IPMI or hypervisor command
# (docs/pillar.md, chaos:power_off). Apart from this file the lab's chaos settings are in
# lab.sls.
{%- set root = opts['pillar_roots']['base'][0] %}
{%- set repo = root[:-7] if root.endswith('/pillar') else root %}
kubeha:
  chaos:
    power_off: [/usr/bin/env, '--chdir={{ repo }}', '{{ repo }}/.venv/bin/python', -m, lab, fault, '{node}', power-off]
    power_on: [/usr/bin/env, '--chdir={{ repo }}', '{{ repo }}/.venv/bin/python', -m, lab, fault, '{node}', power-on]
