# Two entry points a new user needs (README "Quick start"); both set up the toolchain first (idempotent).
.PHONY: setup demo test docs
PROMPT ?= def main(

setup:
	bash scripts/bootstrap.sh

demo: setup
	.venv/bin/dfx generate "$(PROMPT)"

test: setup
	.venv/bin/python -m pytest -q

docs: setup
	.venv/bin/python -m dfx.isa_doc > docs/isa.md
