# `make chaos`: every chaos scenario on the lab (root), kubeha's defaults against the
# runbook's access layer, B five times, the leader-election profiles with a 10-minute soak
# each, and the self-healing VIP (C on the holder and on a non-holder, a 10-minute soak of
# 20 ms +- 10 ms jitter on every node); writes reports/chaos-lab.{md,json,png} (+ one
# timeline per scenario) and commits them (CHAOS_COMMIT=0 leaves the commit to you). About
# 110 minutes on a 2-core machine.
# CHAOS_ARGS, e.g. "--fresh" (rebuild the machines first) or "--parts kubeha --soak 0".
CHAOS_ARGS ?=
CHAOS_COMMIT ?= 1

.PHONY: chaos
chaos: venv system-deps
	$(PY) -m lab.chaos $(CHAOS_ARGS) $(if $(filter 1,$(CHAOS_COMMIT)),--commit,)
