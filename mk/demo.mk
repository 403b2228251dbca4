# `make demo`: the product end to end on the lab (root): lab up, converge, orch.bootstrap,
# a second converge that must change nothing, a 60 s steady-state probe through the VIP and
# the report in reports/ (Markdown + JSON + PNG). DEMO_ARGS, e.g. "--duration 30".
DEMO_ARGS ?=

.PHONY: demo
demo: venv system-deps
	$(PY) -m lab.demo $(DEMO_ARGS)
