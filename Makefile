# The two commands a new user needs: `make demo` (whole pipeline on generated data) and `make test`.
# Both build .venv themselves with the pinned dependencies (scripts/bootstrap.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
# Thread counts are the program's own choice (fashionai.core.runtime: affinity mask and cgroup quota,
# shared among a job's processes); an OMP_NUM_THREADS you export wins.

.PHONY: venv demo test test-quick bench bench-score clean

venv:
	@VENV=$(VENV) scripts/bootstrap.sh

demo: venv
	$(PY) -m fashionai demo

test: venv
	$(PY) -m pytest -q -n auto

test-quick: venv
	$(PY) -m pytest -q -n auto -m "not slow"

# Every benchmark in turn (30-35 minutes on 2 cores); tables in bench/out/*.md, all rows in
# bench/out/results.jsonl. Run it on an otherwise idle machine: figures are throughputs.
BENCH_OUT ?= bench/out
bench: venv
	@mkdir -p $(BENCH_OUT)
	$(PY) bench/bench_train.py --seconds 5 --json $(BENCH_OUT)/results.jsonl > $(BENCH_OUT)/train.md
	$(PY) bench/bench_predict.py --json $(BENCH_OUT)/results.jsonl > $(BENCH_OUT)/predict.md
	$(PY) bench/bench_input.py --json $(BENCH_OUT)/results.jsonl > $(BENCH_OUT)/input.md
	$(PY) bench/bench_head.py --json $(BENCH_OUT)/results.jsonl > $(BENCH_OUT)/head.md
	$(PY) bench/bench_contention.py --json $(BENCH_OUT)/results.jsonl > $(BENCH_OUT)/contention.md
	$(PY) bench/bench_profile.py --json $(BENCH_OUT)/results.jsonl > $(BENCH_OUT)/profile.md
	@cat $(BENCH_OUT)/train.md $(BENCH_OUT)/predict.md $(BENCH_OUT)/input.md $(BENCH_OUT)/head.md \
		$(BENCH_OUT)/contention.md $(BENCH_OUT)/profile.md

# The score: the demo's group nets and one net per task vs the 2018 tutorial's recipe, paired over 5
# seeds on the shop and classic demo data, 4 tasks, 25 epochs (about 40 min on 2 cores); tables in
# bench/out/score.md.
bench-score: venv
	@mkdir -p $(BENCH_OUT)
	$(PY) bench/bench_score.py --recipes tutorial demo defaults --json $(BENCH_OUT)/results.jsonl \
		| tee $(BENCH_OUT)/score.md

clean:
	rm -rf $(VENV) demo .pytest_cache
