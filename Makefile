# metalpower: build, test and benchmark. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
APT_PACKAGES := openipmi ipmitool iptables snmpd snmp redfishtool python3-sushy python3-ironicclient python3-openstackclient python3-nova docker-compose chromium
# OpenStack services the tests run themselves, installed without recommended
# packages (Nova's would pull about 300 more) and without starting them.
OPENSTACK_PACKAGES := keystone placement-api nova-api nova-conductor nova-compute-ironic neutron-server glance-api
PG_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
# The dev server as `make run` and `make bench-server` start it: its SQLite
# file in WAL mode (about 1.5x the round trips of the default), with the
# search attributes the workers set.
DEV_SERVER_FLAGS := --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
	--search-attribute NodeUUID=Keyword --search-attribute NodeName=Keyword --search-attribute PowerTarget=Keyword

.PHONY: all build run demo demo-keystone demo-openstack bench-keystone bench-openstack test-openstack cluster test deps cluster-tools vet workflowcheck replay-refresh replay-record-real unit fuzz bench bench-server bench-power bench-api bench-sync bench-ipmi race chaos soak clean

all: build

# The build ID Worker Deployment Versioning uses unless [temporal] build_id
# is set (docs/operating.md, "Upgrading"): the git revision, "-dirty" with local changes.
BUILD_ID ?= $(shell git describe --always --dirty --abbrev=12 2>/dev/null)
build:
	$(GO) build -ldflags "-X github.com/metalpower/metalpower/internal/conductor.linkedBuildID=$(BUILD_ID)" -o bin/ ./worker ./starter

# run starts the local stack: the Temporal dev server with its Web UI
# (http://127.0.0.1:8233, state in .data/temporal.db) and the worker, on the
# SQLite node store in .data/. Ctrl-C stops both.
run: build tools/bin/temporal
	@mkdir -p .data
	@./tools/bin/temporal server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233 \
		--db-filename .data/temporal.db $(DEV_SERVER_FLAGS) \
		--log-level warn > .data/temporal.log 2>&1 & pid=$$!; \
	trap "kill $$pid 2>/dev/null; wait $$pid 2>/dev/null" EXIT INT TERM; \
	for i in $$(seq 1 60); do ./tools/bin/temporal operator cluster health --address 127.0.0.1:7233 >/dev/null 2>&1 && break; sleep 1; done; \
	echo "Temporal Web UI: http://127.0.0.1:8233  (server log: .data/temporal.log)"; \
	./bin/worker

# demo starts the whole local stack on simulated hardware, without Docker:
# the Temporal dev server with its Web UI (http://127.0.0.1:8233), a Redfish
# and IPMI fleet, a Nova simulator, the worker and the API on :6385, state in
# .data/ (reused by the next run). Ctrl-C stops every process it started.
demo: build tools/bin/temporal
	./bin/starter demo

# demo-keystone is the demo behind a real Keystone (Debian's, on the local
# MariaDB): the API runs with auth_strategy keystone and is the catalog's
# baremetal endpoint; .data/keystone-openrc logs the baremetal CLI in.
demo-keystone: build deps
	./bin/starter demo -keystone

# demo-openstack is the demo inside a real OpenStack: Keystone, Placement,
# Neutron, Glance and Nova with the ironic driver (Debian's, on the local
# MariaDB and RabbitMQ) drive metalpower as their baremetal service. The
# cloud is new each run, so its data directory starts over.
demo-openstack: build deps
	rm -rf .data-openstack
	./bin/starter demo -openstack -data .data-openstack

# cluster runs the production topology on this machine, without Docker,
# from the files under deploy/: the Temporal server on the local
# PostgreSQL (schema set up or upgraded), its Web UI on :8233, the node
# store on PostgreSQL, one worker of the default conductor group and two
# of segment-b (each group with simulated BMCs of its own), two API
# processes (:6385, :6386), the Nova simulator and both schedules. Ctrl-C
# stops it all; the next run reuses the databases.
cluster: build deps
	./bin/starter cluster

# deps installs what the tests drive (Debian's ipmi_sim, ipmitool,
# redfishtool, python3-sushy, Keystone) when missing and starts the local
# PostgreSQL when it is down. It fails loudly rather than letting tests skip.
# The install starts no daemon (a policy-rc.d that refuses, for the install
# only, when the machine has none) and skips dbconfig-common's database
# set-up (tests make their own databases).
deps: tools/bin/temporal cluster-tools webui/node_modules/.package-lock.json
	@$(call apt_install,$(APT_PACKAGES),)
	@$(call apt_install,$(OPENSTACK_PACKAGES),--no-install-recommends)
	@if [ -z "$$METALPOWER_TEST_POSTGRES_URL" ] && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
		echo "starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start || { echo "cannot start PostgreSQL"; exit 1; }; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@pg_isready -h $${METALPOWER_TEST_POSTGRES_HOST:-127.0.0.1} -p 5432 >/dev/null || { echo "PostgreSQL is not reachable"; exit 1; }

# apt_install installs the packages of $(1) that are missing, with apt-get
# options $(2), or fails saying which.
define apt_install
missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then \
	echo "installing:$$missing"; \
	echo "dbconfig-common dbconfig-common/dbconfig-install boolean false" | debconf-set-selections; \
	policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing >/dev/null; \
	rc=$$?; [ -z "$$policy" ] || rm -f /usr/sbin/policy-rc.d; \
	[ $$rc -eq 0 ] || { echo "apt-get install$$missing failed"; exit 1; }; \
fi
endef

# The browser test's playwright-core, pinned in webui/package-lock.json
# (Chromium itself is Debian's, from APT_PACKAGES: no browser downloads).
webui/node_modules/.package-lock.json: webui/package.json webui/package-lock.json
	cd webui && npm ci --no-audit --no-fund

# The temporal CLI (dev server with Web UI), pinned in its own module.
tools/bin/temporal: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o bin/temporal github.com/temporalio/cli/cmd/temporal

# The production topology's parts, pinned like the CLI: the real Temporal
# server and its SQL schema tool, the Web UI server (tools/go.mod), and
# tctl v1.18.0 (tools/tctl/go.mod: its dependencies are older).
cluster-tools: tools/bin/temporal-server tools/bin/temporal-sql-tool tools/bin/temporal-ui-server tools/bin/tctl

tools/bin/temporal-server: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o bin/temporal-server go.temporal.io/server/cmd/server

tools/bin/temporal-sql-tool: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o bin/temporal-sql-tool go.temporal.io/server/cmd/tools/sql

tools/bin/temporal-ui-server: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o bin/temporal-ui-server github.com/temporalio/ui-server/v2/cmd/server

tools/bin/tctl: tools/tctl/go.mod tools/tctl/go.sum
	cd tools/tctl && $(GO) build -o ../bin/tctl github.com/temporalio/tctl/cmd/tctl

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

unit:
	$(GO) test -count=1 -timeout 20m ./...

test: deps vet workflowcheck unit fuzz

# Temporal's static check for nondeterminism in workflow code.
WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0
workflowcheck:
	$(GO) run $(WORKFLOWCHECK) ./workflows/...

# replay-refresh re-records testdata/histories (the replay corpus that
# TestReplayCorpus replays in every test run) from real runs on a dev server.
replay-refresh: tools/bin/temporal
	METALPOWER_REFRESH_REPLAY=1 $(GO) test -count=1 -run '^TestGenerateCorpus$$' -v ./internal/testbed/replay

# replay-record-real records testdata/histories/real-server on the real
# Temporal server on the local PostgreSQL (workers of two conductor
# groups); TestReplayCorpus replays those too.
replay-record-real: deps
	METALPOWER_REFRESH_REPLAY=1 $(GO) test -count=1 -run '^TestRecordRealServerCorpus$$' -v ./internal/testbed/cluster

# A short run of every fuzz target (longer: FUZZTIME=10m make fuzz): API
# request decoding and JSON Patch, Redfish power-state parsing, driver_info,
# configuration files and environment, Nova's answers, and whatever an IPMI
# BMC answers (set-up or in session: no panic, a classified error).
FUZZTIME ?= 5s
FUZZ_TARGETS := ./internal/api:FuzzDecodeRequests ./internal/api:FuzzApplyPatch \
	./internal/bmc/redfish:FuzzPowerState ./internal/node:FuzzDriverInfo \
	./internal/config:FuzzLoadFile ./internal/config:FuzzLoadEnv \
	./internal/nova:FuzzEventResult ./internal/nova:FuzzPowerUpdateResponse \
	./internal/bmc/ipmi:FuzzBMCAnswers
# Go 1.26's fuzz coordinator can fail a run at the -fuzztime boundary with a
# bare "context deadline exceeded" and no failing input (golang/go#75804,
# fixed in Go 1.27): such a run is repeated, up to three times in all. A real
# finding writes its input to testdata/fuzz and fails at once.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		for try in 1 2 3; do \
			echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
			if out=$$($(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then echo "$$out" | tail -1; break; fi; \
			if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "  the fuzz coordinator hit its own deadline with no failing input (golang/go#75804)"; \
				[ $$try -lt 3 ] && continue; \
			fi; \
			echo "$$out"; exit 1; \
		done; \
	done

# Benchmarks: the store over 100,000 nodes and one power read per driver.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./internal/store/
	$(GO) test -run '^$$' -bench . ./internal/bmc/...

# bench-server runs the Temporal server the benchmarks' figures were measured
# on: the dev server alone (no Web UI, no worker, no schedules), its SQLite
# file in WAL mode, in a fresh temporary directory. Run it in one terminal and
# the bench targets below in another; Ctrl-C stops it and removes the file.
bench-server: tools/bin/temporal
	@dir=$$(mktemp -d); trap "rm -rf $$dir" EXIT; \
	echo "Temporal dev server for the benchmarks on 127.0.0.1:7233 (state in $$dir)"; \
	./tools/bin/temporal server start-dev --headless --ip 127.0.0.1 --port 7233 \
		--db-filename $$dir/temporal.db $(DEV_SERVER_FLAGS) \
		--log-level warn

# The power-change benchmark against a running Temporal ([temporal] address;
# make bench-server starts one).
bench-power: build
	./bin/starter bench power

# The REST API at fleet size, as Nova calls it (issue 15's figures), on
# both stores, against a running Temporal.
# bench-keystone: the API's power PUT at 20 clients, noauth and with
# Keystone tokens (warm cache) in the same run, against a real Keystone.
bench-keystone: deps
	$(GO) test -run '^$$' -bench BenchmarkPowerPut -benchtime 8x ./internal/api/

# test-openstack runs the seed's scenario alone against a real OpenStack
# (Keystone, Placement, Neutron, Glance, Nova with the ironic driver; about
# 6 minutes); make test runs it too. docs/openstack.md says what it shows.
test-openstack: deps
	$(GO) test -count=1 -v -timeout 20m -run TestSeedScenario ./internal/testbed/openstack/

# bench-openstack: how long a change through metalpower's API takes to
# show in Nova, p50 and p95 over 20 changes (about 8 minutes).
bench-openstack: deps
	$(GO) test -count=1 -run '^$$' -bench BenchmarkNovaSeesPowerChange -benchtime 1x -timeout 30m ./internal/testbed/openstack/

bench-api: build deps
	./bin/starter bench api --nodes 10000 --database sqlite
	./bin/starter bench api --nodes 10000 --database postgres

# The sync benchmark's headline runs against a running Temporal.
bench-sync: build
	./bin/starter bench sync --driver redfish --nodes 10000 --bmc-latency 100ms

# IPMI passes on Debian's ipmi_sim, 120 s apart as the default sync interval,
# against a running Temporal (IPMI_BMCS=1000 for the large fleet).
IPMI_BMCS ?= 300
bench-ipmi: build deps
	./bin/starter bench sync --ipmi-sim --nodes $(IPMI_BMCS) --passes 5 --gap 120s --warm 6s

# The IPMI session soak at full size (a short run is part of every make test).
soak: deps
	METALPOWER_SOAK=long $(GO) test -count=1 -timeout 60m -v -run '^TestIPMISessions' ./internal/testbed/soak
	./bin/starter bench sync --driver redfish --nodes 10000 --bmc-latency 100ms --drift 0.01
	./bin/starter bench sync --driver ipmi --nodes 1000 --bmc-latency 0s

# chaos runs the chaos test at full size (internal/testbed/chaos): 500 power
# changes over 500 simulated nodes, with sync passes every 5 s, while the
# worker process is SIGKILLed, the Temporal dev server, a private
# PostgreSQL, BMCs and Nova fail and come back; then it checks that
# nothing was lost and prints its figures. A short run (60 changes) is part
# of every `go test ./...`. Size: METALPOWER_CHAOS_CHANGES=1000 make chaos.
CHAOS_CHANGES ?= 500
chaos: tools/bin/temporal
	METALPOWER_CHAOS_CHANGES=$${METALPOWER_CHAOS_CHANGES:-$(CHAOS_CHANGES)} $(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./internal/testbed/chaos

race: deps
	$(GO) test -race -count=1 ./...

clean:
	rm -rf bin webui/artifacts
