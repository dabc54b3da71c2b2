# secrun — one entry point for setting up, running, testing and benchmarking.
#   make run    set everything up, run the bundled example under `strict`, and audit it
#   make test   set everything up and run the whole test suite (host, then the guest suites)
# The venv's interpreter must be runnable by unprivileged users too (rootless launches and
# their tests): Debian's /usr/bin/python3, not one under root's 0700 home directory.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
APT    := $(shell sed -e 's/\#.*//' deps/apt.txt | tr -s ' \n' ' ')
PYTEST ?= $(PY) -m pytest

.PHONY: setup apt venv relink bytecode launcher run test test-host test-guest bench bench-quick docs check lint reliability clean

setup: apt venv

# Debian packages (only as root, only the missing ones).
apt:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=$$(for p in $(APT); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "apt: installing $$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "apt: not root, skipping Debian packages: $(APT)"; fi

# The virtualenv with secrun installed editable (strict mode: a link tree the type checker
# and the import system both resolve), plus the test plugin distribution.
venv: $(VENV)/.stamp
# (PYTHONWARNINGS: setuptools' notices about editable installs are not for our users.)
$(VENV)/.stamp: export PYTHONWARNINGS = ignore
$(VENV)/.stamp: export PIP_DISABLE_PIP_VERSION_CHECK = 1
$(VENV)/.stamp: pyproject.toml deps/secrun-launcher.in $(wildcard core/*.py plugins/*.py tests/dists/*/pyproject.toml tests/dists/*/*.py tests/dists/*/*/*.py)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -U pip setuptools wheel
	@$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation \
	  --config-settings editable_mode=strict -e '.[test]'
	@$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation \
	  tests/dists/plugin-dist tests/dists/audit-plugin-dist tests/dists/example-plugin
	@$(MAKE) -s bytecode launcher
	@touch $@

# Byte-compile the link tree: where PYTHONDONTWRITEBYTECODE is set, Python would otherwise
# recompile secrun on every launch (a 1.5x slower start-up).
bytecode:
	@$(PY) -m compileall -q build/__editable__.* >/dev/null

# The `secrun` command: pip's console script replaced by deps/secrun-launcher.in, which starts
# its interpreter isolated (-I: secrun runs as root, and a root process must not honour
# PYTHONPATH, PYTHONHOME, the user site directory or the working directory) and holds the
# forwarded signals until secrun's handlers are in place.  pip writes console scripts without
# interpreter options, hence this step.
launcher:
	@syspath=$$($(PY) -I -c 'import sys; print(sorted((p for p in sys.path if p.endswith("site-packages") or "__editable__" in p), key=lambda p: "__editable__" not in p))'); \
	  sed -e 's|@PYTHON@|$(abspath $(PY))|' -e "s|@SYSPATH@|$$syspath|" deps/secrun-launcher.in > $(BIN)/secrun.tmp
	@chmod 755 $(BIN)/secrun.tmp && mv -f $(BIN)/secrun.tmp $(BIN)/secrun

# The example goes in on stdin: strict does not show a working directory under a covered path
# (/tmp, /var/tmp, /home, /root...), where a checkout may well be.
run: setup
	$(BIN)/secrun --profile strict -- /bin/sh -s < examples/hello.sh
	$(BIN)/secrun audit --profile strict -- /bin/sh -s

test: setup test-host test-guest

test-host:
	$(PYTEST) -m "not apparmor and not selinux and not cgroup2" tests

# AppArmor, SELinux and cgroup v2 under real enforcement, in a user-mode-linux guest.
test-guest:
	tests/guest/run-guest-suites $(PY)

docs: setup
	$(BIN)/secrun docs --out docs

lint: setup
	$(BIN)/ruff check core plugins tests
	$(BIN)/mypy

# The long runs of the reliability tests, with their figures written to docs/reliability.md:
# the property-based fuzz of profiles, --set and the CLI (FUZZ_EXAMPLES examples, every
# failing one recorded) and the fault soaks: SIGKILL to the supervisor (SOAK_KILLS rounds per
# profile) and SIGTERM/SIGINT/SIGHUP at random points of the launch (SOAK_SIGNALS rounds).
# CI runs the same tests short (a few hundred examples, a few dozen signals).  Fails when
# anything failed, after writing the figures.
FUZZ_EXAMPLES ?= 5000
SOAK_KILLS    ?= 1000
SOAK_SIGNALS  ?= 1000
RELIABILITY   := build/reliability
reliability: setup
	@rm -rf $(RELIABILITY) && mkdir -p $(RELIABILITY)
	-SECRUN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SECRUN_FUZZ_REPORT=$(RELIABILITY)/fuzz.json \
	  $(PYTEST) -q --junitxml=$(RELIABILITY)/fuzz.xml tests/host/test_fuzz.py
	-SECRUN_SOAK_KILLS=$(SOAK_KILLS) SECRUN_SOAK_SIGNALS=$(SOAK_SIGNALS) $(PYTEST) -q \
	  --junitxml=$(RELIABILITY)/soak.xml tests/host/test_supervision.py tests/host/test_faults.py \
	  -k "sigkill_of_the_supervisor or signal_at_any_point_of_the_launch"
	$(PY) tests/host/test_fuzz.py $(RELIABILITY) docs/reliability.md \
	  "FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SOAK_KILLS=$(SOAK_KILLS) SOAK_SIGNALS=$(SOAK_SIGNALS)"

# Launch latency, throughput, memory and seccomp overhead against the peers (docs/benchmarks.md).
bench: setup
	$(PY) bench/bench.py

bench-quick: setup
	$(PY) bench/bench.py --quick

# Refresh the editable install's link tree after adding a file under core/, plugins/ or
# profiles/ (serialised: several developers may run it at once).
relink:
	flock /tmp/secrun-venv.lock $(PY) -m pip install -q --disable-pip-version-check \
	  --no-build-isolation --no-deps --config-settings editable_mode=strict -e .
	@$(MAKE) -s bytecode launcher

clean:
	rm -rf $(VENV) build *.egg-info
