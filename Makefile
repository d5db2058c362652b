# xlbd: `make demo` and `make test` do all the set-up a fresh machine needs.
SHELL := /bin/bash
GO ?= go
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(PATH):/usr/sbin:/sbin

# Debian packages and the file or command that shows each is there.
DEPS := clang:clang llvm:llvm-strip libbpf-dev:/usr/include/bpf/bpf_helpers.h \
	linux-libc-dev:/usr/include/linux/bpf.h bpftool:bpftool iproute2:ip \
	tcpdump:tcpdump ethtool:ethtool \
	iperf3:iperf3 nftables:nft keepalived:keepalived

GENERATED := $(wildcard bpf/*_bpfel.go bpf/*_bpfel.o)
# Fuzzing budgets in executions, not seconds (about 20 s each here): Go
# 1.26's fuzz coordinator can fail a run with "context deadline exceeded"
# when a duration ends mid-execution on a loaded machine (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race.
FUZZ_BPF ?= 150000x
FUZZ_CONFIG ?= 300000x

.PHONY: all deps generate check-generated build test lint demo bench install clean vm-image

all: build

deps:
	@missing=""; \
	for d in $(DEPS); do \
		pkg=$${d%%:*}; probe=$${d#*:}; \
		case $$probe in /*) [ -e $$probe ] ;; *) command -v $$probe >/dev/null ;; esac || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Regenerates the bpf2go Go files and objects, which are committed so that
# `go build` never needs clang.
generate: deps
	$(GO) generate ./bpf

# Fails when the committed objects are not what the C sources compile to.
check-generated: deps
	@tmp=$$(mktemp -d); cp $(GENERATED) $$tmp/; \
	$(GO) generate ./bpf || exit 1; \
	stale=""; for f in $(GENERATED); do cmp -s $$f $$tmp/$$(basename $$f) || stale="$$stale $$f"; done; \
	rm -rf $$tmp; \
	if [ -n "$$stale" ]; then echo "stale generated files (now regenerated, commit them):$$stale"; exit 1; fi; \
	echo "generated files are fresh"

build:
	$(GO) build -o bin/xlbd ./cmd/xlbd

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

# The qemu guest (Debian's kernel, real IPVS) that internal/vmtest boots;
# cached in build/ipvs-vm until the kernel package or the script changes.
vm-image:
	$(SUDO) bash scripts/ipvs-vm-image.sh build/ipvs-vm

# Unit, golden-packet, fuzz-seed and network-namespace tests (the last need
# root; under CI=true they fail instead of skipping), then a short fuzzing
# run of the balancer and of the config parser.
test: deps check-generated lint vm-image
	$(SUDO) env "PATH=$(PATH)" CI=$(CI) $(GO) test -count=1 -timeout 20m ./...
	$(SUDO) env "PATH=$(PATH)" CI=$(CI) $(GO) test -run '^$$' -fuzz '^FuzzBalancer$$' -fuzztime $(FUZZ_BPF) ./pkg/dataplane/xdp
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_CONFIG) ./pkg/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseKeepalived$$' -fuzztime $(FUZZ_CONFIG) ./pkg/config

# Builds, then shows NAT, DR and TUN forwarding in a namespace lab.
demo: deps build
	$(SUDO) env "PATH=$(PATH)" $(GO) run ./internal/demo --xlbd bin/xlbd

# BENCHMARKS.md, issue 15's sections: per-packet cost against the trivial
# XDP program (and Katran's with KATRAN_SRC=DIR, a checkout of
# facebookincubator/katran), forwarding rate through veths, the control
# plane, VRRP failover, health checks and the Go benchmarks of the hot
# user-space paths. Each part is one `go test -bench` as root, teed to
# build/bench-PART.txt between a line naming the command and one with its
# exit status and duration (-v, as only then does go test show why a
# benchmark skipped); internal/benchmd makes BENCHMARKS.md of every part's
# file, and a part that failed, skipped or never ran is written as "not
# run: why" while the others go on. BENCH_PARTS="go maps" runs only those
# parts again and keeps the others' files from an earlier run;
# BENCH_OUT=FILE writes FILE instead of BENCHMARKS.md. About 15 minutes on
# 2 cores, most of it forwarding, VRRP failover and health checks.
KATRAN_SRC ?=
BENCH_COUNT ?= 5
BENCH_E2E_COUNT ?= 3
# Per-packet figures move in 10 ns steps and with the host's noise: more
# runs for their medians (each run takes about 5 s).
BENCH_XDP_COUNT ?= 11
BENCH_ALL := xdp forward daemon maps apply vrrp-failover vrrp-instances health go scrape
BENCH_PARTS ?= $(BENCH_ALL)
BENCH_OUT ?= BENCHMARKS.md
BENCH_xdp := ./pkg/dataplane/xdp -bench 'PerPacket|NewFlowPerScheduler/(rr|wlc|sh|mh)/' -benchtime 20000x -count $(BENCH_XDP_COUNT)
BENCH_forward := ./internal/e2e -bench Forwarding -benchtime 1x -count $(BENCH_E2E_COUNT)
BENCH_daemon := ./internal/e2e -bench '^BenchmarkDaemon$$' -benchtime 5x -count $(BENCH_E2E_COUNT)
BENCH_maps := ./pkg/maps -bench '^BenchmarkMapMemory$$' -benchtime 1x -count 1
BENCH_apply := ./pkg/dataplane/xdp -bench '^Benchmark(Apply|ApplyOneWeight|ApplyRealDown)$$' -benchtime 10x -count $(BENCH_COUNT)
# 5 failovers per row and implementation in each of b.N's rounds: 1x is
# already 2.5 minutes.
BENCH_vrrp-failover := ./internal/e2e -bench '^BenchmarkVRRPFailover$$' -benchtime 1x -count 1
BENCH_vrrp-instances := ./internal/e2e -bench '^BenchmarkVRRPInstances$$' -benchtime 1x -count $(BENCH_E2E_COUNT)
BENCH_health := ./internal/e2e -bench '^BenchmarkHealthChecks$$' -benchtime 1x -count $(BENCH_E2E_COUNT)
BENCH_go := ./pkg/config ./pkg/reconcile ./pkg/sched -bench . -benchmem -count $(BENCH_COUNT)
BENCH_scrape := ./pkg/dataplane/xdp -bench '^BenchmarkScrape$$' -benchmem -count $(BENCH_COUNT)
# $(call bench_run,PART): the terminal sees results and failures, not the
# benchmarks' logs.
bench_run = { echo "\# go test $(BENCH_$(1)) -run '^\$$' -v"; s=$$(date +%s); \
	$(SUDO) env "PATH=$(PATH)" KATRAN_SRC="$(if $(KATRAN_SRC),$(abspath $(KATRAN_SRC)))" \
		$(GO) test $(BENCH_$(1)) -run '^$$' -v 2>&1; \
	echo "\# exit status $$? after $$(( $$(date +%s) - s )) s"; } | tee build/bench-$(1).txt | \
	grep --line-buffered -v -E '^([[:space:]]|Benchmark[^[:space:]]*$$)' || true
bench: deps
	@mkdir -p build
	@$(foreach p,$(BENCH_PARTS),echo "== make bench: $(p)"; $(call bench_run,$(p));)
	$(GO) run ./internal/benchmd --katran "$(KATRAN_SRC)" $(BENCH_ALL:%=build/bench-%.txt) > build/benchmarks.md.tmp
	mv build/benchmarks.md.tmp $(BENCH_OUT)
	@echo "wrote $(BENCH_OUT)"

# The binary, the systemd unit and, unless one exists, /etc/xlbd/lb.yaml.
install: build
	install -D -m 0755 bin/xlbd $(DESTDIR)/usr/local/sbin/xlbd
	install -D -m 0644 packaging/xlbd.service $(DESTDIR)/lib/systemd/system/xlbd.service
	[ -e $(DESTDIR)/etc/xlbd/lb.yaml ] || install -D -m 0644 testdata/lb.yaml $(DESTDIR)/etc/xlbd/lb.yaml

clean:
	rm -rf bin
