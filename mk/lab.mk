# The local lab (lab/, DESIGN.md §3): Debian machines in systemd-nspawn, a Salt master and
# an apt mirror on bridge kha-br0 (198.18.0.0/24). Root only. `python -m lab --help` for more.
# Runs on a host without systemd as PID 1 and cgroup v1 (this CI machine) and on a systemd +
# cgroup v2 host (Debian 12, Ubuntu 22.04/24.04); `lab-up` prints which it found.
# LAB_ARGS, e.g. `make lab-up LAB_ARGS="--workers 2"`.
LAB_ARGS ?=

.PHONY: lab-up lab-down lab-status lab-systemd-host

lab-up: venv system-deps
	$(PY) -m lab up --client $(LAB_ARGS)

# Also removes the systemd host machine of lab-systemd-host, if one is up.
lab-down: venv
	$(PY) -m lab down

lab-status: venv
	$(PY) -m lab status

# The lab in a systemd + cgroup v2 host machine booted here (lab/sdhost.py): up, ping,
# freeze/thaw, power-off/on, down, each checked and timed; the host machine is removed after.
lab-systemd-host: venv system-deps
	$(PY) -m lab.sdhost_proof
