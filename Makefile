# Fresh machine: `make demo` or `make test` create .venv, install, and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# onnxruntime 1.31 (Piper, Silero) resolves mobile.events.data.microsoft.com for telemetry every few
# seconds unless this is set before it loads: DNS traffic off a machine that must stay on 127.0.0.0/8.
export ORT_DISABLE_TELEMETRY := 1

.PHONY: demo test install browser sipp pipecat-bot clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# A real third-party agent for the interop tests: a Pipecat bot (tests/third_party/), in its own
# venv because pipecat-ai needs protobuf<7 and ray pins protobuf 7. No torch, no downloads at run time.
PIPECAT_VENV := .venv-pipecat
PIPECAT_STAMP := $(PIPECAT_VENV)/.installed
PIPECAT_REQS := tests/third_party/pipecat-requirements.txt
PIPECAT_PINS := tests/third_party/pipecat-constraints.txt

$(PIPECAT_STAMP): $(PIPECAT_REQS) $(PIPECAT_PINS)
	test -x $(PIPECAT_VENV)/bin/python || $(PYTHON) -m venv $(PIPECAT_VENV)
	$(PIPECAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PIPECAT_VENV)/bin/python -m pip install --quiet -c $(PIPECAT_PINS) -r $(PIPECAT_REQS)
	touch $(PIPECAT_STAMP)

pipecat-bot: $(PIPECAT_STAMP)

demo: $(STAMP)
	$(BIN)/callfleet demo

# The report is tested in a real headless Chromium (Debian's package; needs root or sudo).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# SIP is tested against real SIP software: SIPp (Debian's sip-tester) answers our calls.
sipp:
	@command -v sipp >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester; }

# Unit tests on both cores (pytest-xdist), then the real calls, one module at a time: they run on
# the wall clock, and two modules at once make callers and agents late on 2 cores. Both always
# run; either failing fails the target.
test: $(STAMP) $(PIPECAT_STAMP) browser sipp
	$(BIN)/python -m pytest -m "not e2e and not cluster" -n 2; unit=$$?; \
	$(BIN)/python -m pytest -m "e2e or cluster"; calls=$$?; \
	test $$unit -eq 0 && test $$calls -eq 0

clean:
	rm -rf $(VENV) $(PIPECAT_VENV) runs
