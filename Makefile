# `make demo` and `make test` set up everything they need (Debian packages, .venv) on a fresh machine,
# and are quiet when that is already done. Run as root (sudo): labs are network namespaces.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := iproute2 iptables nftables

.PHONY: demo test test-unit test-lab setup debs bench clean-venv

setup: debs $(VENV)/.installed

debs:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || printf '%s ' $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "Debian packages missing: $$missing; run as root (sudo make ...)"; exit 3; fi; \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the project into $(VENV)"
	@$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]' 2> >(grep -v "^WARNING: Location" >&2)
	@touch $@

test: setup
	$(BIN)/pytest

test-unit: setup
	$(BIN)/pytest tests/unit

test-lab: setup
	$(BIN)/pytest tests/lab

demo: setup
	@$(BIN)/testbed doctor || true
	@$(BIN)/testbed validate scenarios/*.yaml
	@$(BIN)/testbed lab check scenarios/office.yaml

bench: setup
	$(BIN)/python bench/lab_updown.py

clean-venv:
	rm -rf $(VENV)
