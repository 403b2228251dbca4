# The local lab (lab/, DESIGN.md §3): Debian machines in systemd-nspawn, a Salt master and
# an apt mirror on bridge kha-br0 (198.18.0.0/24). Root only. `python -m lab --help` for more.
# LAB_ARGS, e.g. `make lab-up LAB_ARGS="--workers 2"`.
LAB_ARGS ?=

.PHONY: lab-up lab-down lab-status

lab-up: venv system-deps
	$(PY) -m lab up --client $(LAB_ARGS)

lab-down: venv
	$(PY) -m lab down

lab-status: venv
	$(PY) -m lab status
