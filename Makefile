# Two entry points a new user needs (README "Quick start"); both set up the toolchain first (idempotent).
.PHONY: setup demo test docs
PROMPT ?= def main(
SEED ?= 2
# The demo samples (temperature 0.8, top-k 40) with a fixed seed, so every run prints the same text, and caps runs
# of one token at 12 (the 4-layer byte model's greedy output loops on spaces; README "Quick start").
DEMO_SAMPLING ?= -n 150 --temperature 0.8 --top-k 40 --max-repeat 12 --seed $(SEED)

setup:
	bash scripts/bootstrap.sh

demo: setup
	.venv/bin/dfx generate "$(PROMPT)" $(DEMO_SAMPLING)

test: setup
	.venv/bin/python -m pytest -q

docs: setup
	.venv/bin/python -m dfx.isa_doc > docs/isa.md
