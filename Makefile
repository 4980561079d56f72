# `make demo` and `make test` set up everything they need (Debian packages, .venv) on a fresh machine,
# and are quiet when that is already done. Run as root (sudo): labs are network namespaces.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := iproute2 iptables nftables libopus0 chromium coturn iperf3
# only where the kernel lacks sch_netem: the stock-kernel VM that runs the netem tests (testbed/lab/netemvm.py)
VM_DEBS := qemu-system-x86 linux-image-amd64 busybox-static file

.PHONY: demo test check lint test-unit test-lab setup debs netem-vm bench clean-venv

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

# netem tests run natively where this kernel has sch_netem (checked in a throwaway namespace), else in a VM
netem-vm: debs $(VENV)/.installed
	@if unshare --net tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then exit 0; fi; \
	missing=$$(for p in $(VM_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || printf '%s ' $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "no sch_netem here; the netem VM needs Debian packages: $$missing; run as root (sudo make ...)"; exit 3; fi; \
	  echo "no sch_netem on this kernel; installing the netem VM's Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	if [ ! -x $(BIN)/vng ]; then \
	  echo "installing virtme-ng into $(VENV) (the netem VM)"; \
	  $(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,vm]' 2> >(grep -v "^WARNING: Location" >&2); \
	fi

# the docker backend: a Docker engine (installed and started if missing) and the node image, built
# offline from a host wheelhouse; quiet when both are current (containers/, testbed/images/)
.PHONY: images
images: setup
	@bash containers/provision-docker.sh
	@$(BIN)/testbed images build --quiet

# the fast stage first (lint, types, unit tests: a couple of minutes), then what needs provisioning
test: check netem-vm images
	$(BIN)/pytest tests --ignore=tests/unit

check: lint test-unit

lint: setup
	$(BIN)/ruff check testbed tests bench
	$(BIN)/ruff format --check testbed tests bench
	$(BIN)/mypy testbed

test-unit: setup
	$(BIN)/pytest tests/unit

test-lab: setup
	$(BIN)/pytest tests/lab

demo: setup
	@$(BIN)/testbed doctor || true
	@$(BIN)/testbed run scenarios/office.yaml

bench: setup
	$(BIN)/python bench/lab_updown.py

clean-venv:
	rm -rf $(VENV)
