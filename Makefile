# blvm-sandbox build. `make run` is the main job, `make test` the tests.
SHELL := /bin/bash
GO ?= go
BIN := bin
# libcontainer needs cgo (nsenter) and the seccomp tag; without the tag every
# container with a filter fails at start.
TAGS := seccomp
GOTEST := CGO_ENABLED=1 $(GO) test -tags $(TAGS)
# The runtime links statically: each container's init re-executes it, and a
# static binary skips the dynamic loader on every start (~2 ms, ~3 ms of CPU
# here). Benchmarks that start containers link the same way.
STATIC := -tags "$(TAGS) netgo osusergo" -ldflags "-linkmode external -extldflags -static"
GOTEST_STATIC := CGO_ENABLED=1 $(GO) test $(STATIC)
EXAMPLE_MODULES := stratum-v2 merge-mining block-logger governance-voter
FUZZTIME ?= 30s

.PHONY: all deps bench-deps build test run bench fuzz lint generate proto proto-check clean install
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN := $(shell $(GO) env GOPATH)/bin

all: build

# Install the system packages the build needs, only when missing.
deps:
	@need=""; \
	for p in libseccomp-dev libc6-dev pkg-config gcc protobuf-compiler e2fsprogs runc crun; do \
	  dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; \
	done; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	fi
	@[ -x $(GOBIN)/protoc-gen-go ] || $(GO) install $(PROTOC_GEN_GO)

# promtool checks the daemon's /metrics in the tests. It comes from Debian's
# prometheus package, unpacked rather than installed (installing it would
# set up a Prometheus server).
PROMTOOL := $(BIN)/tools/promtool
$(PROMTOOL):
	@rm -rf $(BIN)/tools/deb && mkdir -p $(BIN)/tools/deb
	cd $(BIN)/tools/deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x $(BIN)/tools/deb/prometheus_*.deb $(BIN)/tools/deb/x
	cp $(BIN)/tools/deb/x/usr/bin/promtool $@
	rm -rf $(BIN)/tools/deb

# build and test pull in deps, so `make run` and `make test` work on a fresh
# machine that has only Go (deps is a no-op once the packages are there).
build: deps
	# -buildvcs=auto: `version` names the commit even where GOFLAGS turns stamping off.
	CGO_ENABLED=1 $(GO) build -buildvcs=auto $(STATIC) -o $(BIN)/blvm-sandbox ./cmd/blvm-sandbox
	# The container init: libcontainer re-executes it in every container
	# start, so it holds libcontainer and nothing of the daemon.
	CGO_ENABLED=1 $(GO) build -trimpath $(STATIC) -o $(BIN)/blvm-sandbox-init ./cmd/blvm-sandbox-init
	# The shim runs inside every container: static, no libc, no cgo.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/blvm-landlock-shim ./cmd/blvm-landlock-shim
	# Example modules: static, they run in an empty rootfs.
	@for m in $(EXAMPLE_MODULES); do \
	  echo "CGO_ENABLED=0 $(GO) build -o $(BIN)/examples/$$m ./examples/$$m"; \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/examples/$$m ./examples/$$m || exit 1; \
	done

# Unit tests everywhere; integration/ runs real kernels and needs root (its
# tests skip themselves otherwise).
test: deps lint proto-check $(PROMTOOL)
	PROMTOOL=$(abspath $(PROMTOOL)) $(GOTEST) -count=1 ./...
	@# The backend tests start real btcds; none may outlive them.
	@if pgrep -x btcd >/dev/null; then echo "a btcd outlived the tests:"; pgrep -ax btcd; exit 1; fi

# The README's main job: a demo node with the example modules signed 2-of-3,
# sandboxed, on the embedded dev chain. RUN_SECONDS=N stops it after N s.
run: build
	BIN=$(BIN) ./scripts/demo.sh

# Benchmarks against peers, medians of several runs, written to
# docs/BENCHMARKS.md. Needs root (containers, the root-owned store) and the
# peers: runc, crun, bwrap, coreutils. The slow ones (100 modules at once)
# run fewer times.
BENCHCOUNT ?= 5
SLOWCOUNT ?= 3
# The peers the benchmarks measure against, only when missing. A peer that
# still does not run makes benchtable refuse to replace docs/BENCHMARKS.md.
bench-deps:
	@need=""; \
	for p in runc crun bubblewrap hyperfine; do \
	  dpkg -s $$p >/dev/null 2>&1 || need="$$need $$p"; \
	done; \
	if [ -n "$$need" ]; then \
	  echo "installing:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	fi

bench: build bench-deps
	@mkdir -p $(BIN)
	set -o pipefail; { \
	  $(GOTEST) -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./verify/ && \
	  $(GOTEST) -run '^$$' -bench 'Seal|Sha256sum|Verify|Hub|Echo' -benchmem -count $(BENCHCOUNT) ./bench/ && \
	  $(GOTEST_STATIC) -run '^$$' -bench '^Benchmark(ColdStart|StartPrepared|Peer(PlainExec|PlainExecShim|Bwrap|Runc|Crun|CrunStart|CrunWrapper)|Restart|RestartAfterBackoff)$$' -benchtime 20x -count $(BENCHCOUNT) ./bench/ && \
	  $(GOTEST_STATIC) -run '^$$' -bench '^Benchmark(IdleModules|LoadChain100|PeerCrunChain100)$$' -benchtime 1x -count $(SLOWCOUNT) -timeout 30m ./bench/ && \
	  BIN=$(BIN) ./scripts/bench-cli.sh && \
	  COUNT=$(BENCHCOUNT) ./scripts/bench-backend.sh && \
	  BIN=$(BIN) COUNT=$(BENCHCOUNT) ./scripts/bench-registry.sh ; \
	} | tee $(BIN)/bench.txt
	$(GO) run ./bench/benchtable -title "blvm-sandbox benchmarks" \
	  -pair BenchmarkSeal256MiB=BenchmarkPeerSha256sum256MiB \
	  -pair BenchmarkHubRoundTrip=BenchmarkPeerUnixEcho \
	  -pair BenchmarkColdStart=BenchmarkPeerCrun \
	  -pair BenchmarkColdStart=BenchmarkPeerRunc \
	  -pair BenchmarkColdStart=BenchmarkPeerBwrap \
	  -pair BenchmarkStartPrepared=BenchmarkPeerCrunStart \
	  -pair BenchmarkStartPrepared=BenchmarkPeerCrun \
	  -pair BenchmarkLoadChain100=BenchmarkPeerCrunChain100 \
	  -pair BenchmarkRestart=BenchmarkPeerPlainExec \
	  -pair BenchmarkRestart=BenchmarkPeerCrun \
	  -pair BenchmarkRestartAfterBackoff=BenchmarkPeerPlainExec \
	  -pair BenchmarkRestartAfterBackoff=BenchmarkPeerPlainExecShim \
	  -pair BenchmarkStartPrepared=BenchmarkPeerPlainExecShim \
	  -pair BenchmarkCLIRun=BenchmarkPeerCrunRunMinimal \
	  -pair BenchmarkBlobDownload/client=BenchmarkBlobDownload/curl \
	  -pair BenchmarkBlobDownload/client=BenchmarkBlobDownload/curl-sha256-sync \
	  -pair BenchmarkBlockEventLatency/driver_p50=BenchmarkBlockEventLatency/rpcclient_p50 \
	  -pair BenchmarkBlockEventLatency/driver_p99=BenchmarkBlockEventLatency/rpcclient_p99 \
	  -pair BenchmarkBlockByHeight/driver=BenchmarkBlockByHeight/rpcclient \
	  -pair BenchmarkGetBlockByHeightBtcd/hub=BenchmarkGetBlockByHeightBtcd/rpcclient \
	  -pair BenchmarkBlockEventLatencyHub/hub_p50=BenchmarkBlockEventLatencyHub/rpcclient_p50 \
	  -pair BenchmarkBlockEventLatencyHub/hub_p99=BenchmarkBlockEventLatencyHub/rpcclient_p99 \
	  -notes docs/benchmarks-notes.md < $(BIN)/bench.txt > $(BIN)/BENCHMARKS.md
	mv $(BIN)/BENCHMARKS.md docs/BENCHMARKS.md
	@echo "wrote docs/BENCHMARKS.md"

fuzz:
	$(GOTEST) -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./manifest/
	$(GOTEST) -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME) ./policy/
	$(GOTEST) -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./nodeconfig/
	$(GOTEST) -run '^$$' -fuzz FuzzParseSignature -fuzztime $(FUZZTIME) ./verify/
	$(GOTEST) -run '^$$' -fuzz FuzzParsePublicKey -fuzztime $(FUZZTIME) ./verify/
	$(GOTEST) -run '^$$' -fuzz FuzzReadEnvelope -fuzztime $(FUZZTIME) ./ipc/

lint:
	@files=$$(git ls-files '*.go' 2>/dev/null); [ -n "$$files" ] || files=$$(find . -name '*.go' -not -path './bin/*'); \
	out=$$(gofmt -l $$files); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	CGO_ENABLED=1 $(GO) vet -tags $(TAGS) ./...

# Refresh golden files after an intended change to the compiler's output.
generate:
	$(GOTEST) ./cmd/blvm-sandbox/ -update
	$(GOTEST) ./manifest/ -run TestSigningVectors -update

# The protocol schema is ipc/proto; the Go code in ipc/pb is generated from
# it and committed. proto-check fails when the two drift.
proto:
	PATH="$(GOBIN):$$PATH" protoc -I ipc/proto --go_out=. --go_opt=module=github.com/blvm/blvm-sandbox \
	  ipc/proto/blvm/module/v1/module.proto

proto-check:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	PATH="$(GOBIN):$$PATH" protoc -I ipc/proto --go_out=$$tmp --go_opt=module=github.com/blvm/blvm-sandbox \
	  ipc/proto/blvm/module/v1/module.proto && \
	diff -u ipc/pb/module.pb.go $$tmp/ipc/pb/module.pb.go || { echo "ipc/pb is stale: run make proto"; exit 1; }

# Install for the systemd unit (docs/systemd.md): the CLI and daemon, the
# shim, the unit (its paths follow PREFIX and SYSCONFDIR), the example node
# config (an existing one is kept) and the docs. DESTDIR stages it.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
# Where runtime.FindShim looks, relative to the binary (runtime.ShimLibexec):
# not a setting of its own.
LIBEXECDIR := $(PREFIX)/libexec/blvm-sandbox
DOCDIR := $(PREFIX)/share/doc/blvm-sandbox

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/blvm-sandbox
	install -m 0755 $(BIN)/blvm-sandbox $(DESTDIR)$(PREFIX)/bin/blvm-sandbox
	install -m 0755 $(BIN)/blvm-landlock-shim $(DESTDIR)$(LIBEXECDIR)/blvm-landlock-shim
	install -m 0755 $(BIN)/blvm-sandbox-init $(DESTDIR)$(LIBEXECDIR)/blvm-sandbox-init
	sed -e 's|/usr/local/|$(PREFIX)/|g' -e 's|/etc/blvm-sandbox/|$(SYSCONFDIR)/blvm-sandbox/|g' \
	  contrib/systemd/blvm-sandbox.service > $(DESTDIR)$(UNITDIR)/blvm-sandbox.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/blvm-sandbox.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/blvm-sandbox/node.toml ]; then \
	  echo "kept $(DESTDIR)$(SYSCONFDIR)/blvm-sandbox/node.toml"; \
	else \
	  install -m 0644 examples/node.toml $(DESTDIR)$(SYSCONFDIR)/blvm-sandbox/node.toml; \
	fi
	install -m 0644 README.md docs/systemd.md $(DESTDIR)$(DOCDIR)/

clean:
	rm -rf $(BIN)
