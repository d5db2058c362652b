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

# Per-packet cost against the trivial XDP program, and Katran's with
# KATRAN_SRC=DIR (a checkout of facebookincubator/katran), written to
# BENCHMARKS.md as medians of BENCH_COUNT runs.
KATRAN_SRC ?=
BENCH_COUNT ?= 5
bench: deps
	@mkdir -p build
	set -o pipefail; $(SUDO) env "PATH=$(PATH)" KATRAN_SRC="$(if $(KATRAN_SRC),$(abspath $(KATRAN_SRC)))" $(GO) test -run '^$$' \
		-bench 'PerPacket|NewFlowPerScheduler/(rr|wlc|sh|mh)/' -benchtime 20000x -count $(BENCH_COUNT) \
		./pkg/dataplane/xdp | tee build/bench-xdp.txt
	$(GO) run ./internal/benchmd --katran "$(KATRAN_SRC)" build/bench-xdp.txt > BENCHMARKS.md
	@echo "wrote BENCHMARKS.md"

# The binary, the systemd unit and, unless one exists, /etc/xlbd/lb.yaml.
install: build
	install -D -m 0755 bin/xlbd $(DESTDIR)/usr/local/sbin/xlbd
	install -D -m 0644 packaging/xlbd.service $(DESTDIR)/lib/systemd/system/xlbd.service
	[ -e $(DESTDIR)/etc/xlbd/lb.yaml ] || install -D -m 0644 testdata/lb.yaml $(DESTDIR)/etc/xlbd/lb.yaml

clean:
	rm -rf bin
