# Stent's build, test and demo entry points. `make demo` and `make test` do
# all set-up on a fresh Debian 12 machine as root and are idempotent.

export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
CACHE ?= $(CURDIR)/.cache
export STENT_CACHE := $(CACHE)
GOTESTFLAGS ?=

.PHONY: all build install package deps test test-short lint demo bench clean fmt vet fuzz screenshots corpus

all: build

deps:
	@scripts/setup-deps.sh

# bin/stent, bin/stent-tools (install it beside stent or in /usr/lib/stent)
# and bin/stent-server, stamped with `git describe` for --version.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
build:
	$(GO) build -ldflags "-X github.com/stent-dev/stent/internal/version.stamped=$(VERSION)" -o bin/ ./cmd/...

# Install as a distribution package would: stent in /usr/sbin (where the
# systemd units run it), stent-tools in /usr/lib/stent (where stent finds
# it), stent-server in /usr/bin, the units and the docs they point to.
# DESTDIR stages the tree for packaging.
DESTDIR ?=
PREFIX ?= /usr
UNITDIR ?= /lib/systemd/system
install: build
	install -D -m 0755 bin/stent $(DESTDIR)$(PREFIX)/sbin/stent
	install -D -m 0755 bin/stent-tools $(DESTDIR)$(PREFIX)/lib/stent/stent-tools
	install -D -m 0755 bin/stent-server $(DESTDIR)$(PREFIX)/bin/stent-server
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/share/doc/stent $(DESTDIR)/etc/stent/keys
	install -m 0644 deploy/systemd/*.service deploy/systemd/*.timer $(DESTDIR)$(UNITDIR)/
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/stent/

# dist/: the stent (hosts) and stent-server packages as .deb and .rpm, with
# the binaries of bin/ in make install's layout, the units and maintainer
# scripts that enable them (built with nfpm by internal/pkgbuild; see
# docs/packaging.md). The version is $(VERSION) made valid for dpkg and rpm.
package: build
	$(GO) run ./internal/tools/mkpkg --bin bin --out dist --version "$(VERSION)"

# The whole suite, QEMU tests included (they download Debian kernels into
# $(CACHE) on first use); scripts/test.sh starts the longest test, the
# real-system fleet scenario, first, beside the rest.
test: deps lint
	scripts/setup-postgres.sh >/dev/null
	GO=$(GO) GOTESTFLAGS="$(GOTESTFLAGS)" scripts/test.sh

# What make test checks before testing: gofmt, go vet, go.mod and go.sum
# tidy (`go mod tidy` would change nothing), and no unused code
# (staticcheck's U1000, pinned in go.mod's tool directive, so it builds from
# the module proxy like any dependency).
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted (make fmt)"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(GO) tool staticcheck -checks U1000 ./...

# Unit tests only: no QEMU, no downloads.
test-short:
	$(GO) test -short ./...

# The corpus of real kernel fixes (corpus/): each built with stent build,
# applied, checked and reverted in a QEMU guest, or refused as its fix.json
# expects. Prints one summary line and writes docs/corpus.md. make test runs
# the fixes marked "subset" (TestCorpusSubset).
corpus: deps
	$(GO) run ./internal/tools/corpus

# The corpus' fixes marked "cumulative" built into one cumulative patch that
# replaces an earlier one (half of them) live while their checks run in a
# loop in the guest.
.PHONY: corpus-cumulative
corpus-cumulative: deps
	$(GO) run ./internal/tools/corpus -cumulative

demo: deps
	$(GO) run ./internal/tools/demo

bench: deps
	$(GO) run ./internal/tools/benchapply

# Every fuzz target of the module for FUZZTIME each (default 10s), one at a
# time; PKGS=./vuln/... or RUN=FuzzParseCVSS narrow it. A failing input is
# saved under the package's testdata/fuzz/ (scripts/fuzz.sh).
FUZZTIME ?= 10s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# docs/dashboard-*.png: the web dashboard's main pages, as server/web's
# browser test (headless Chromium, 30 simulated hosts) sees them.
screenshots: deps
	STENT_UI_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run TestBrowser ./server/web/

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf $(CACHE) bin dist

# Exposure plus plan for 100,000 synthetic hosts over 5,000 CVEs (figures in
# docs/benchmarks.md, section "Planner").
.PHONY: bench-policy
bench-policy:
	$(GO) run ./internal/tools/benchplan

# Fleet benchmark: FLEET_N simulated agents (the real agent code over a
# simulated kernel) against one stent-server process on loopback; see
# docs/benchmarks.md. The last line is the summary.
FLEET_N ?= 10000
.PHONY: bench-fleet
bench-fleet:
	@$(GO) build -o bin/ ./cmd/stent-server
	@$(GO) run ./internal/tools/benchfleet -n $(FLEET_N) -server-bin bin/stent-server

# The live plan through stent-server with FLEET_N agents sending the
# synthetic fleet's inventories (internal/synthfleet); see docs/benchmarks.md.
# The server runs with --memory-limit FLEET_MEMORY_LIMIT (empty: none).
FLEET_MEMORY_LIMIT ?= 850MiB
.PHONY: bench-fleet-plan
bench-fleet-plan:
	@$(GO) build -o bin/ ./cmd/stent-server
	@$(GO) run ./internal/tools/benchfleet -plan -n $(FLEET_N) -server-bin bin/stent-server -server-memory-limit "$(FLEET_MEMORY_LIMIT)"

# Builder benchmark: stent build of a one-file fix for 6.1.0-56-amd64 from a
# fresh cache (packages unpacked, source downloaded and extracted, tree
# prepared), then three times with everything cached; see docs/benchmarks.md,
# section "Builder".
.PHONY: bench-build
bench-build: deps
	$(GO) run ./internal/tools/benchbuild

# Patch factory benchmark: Debian's one-fix upload 6.1.192-3 from the
# worker's start to two QEMU canary guests (6.1.0-55-amd64 and
# 6.1.0-56-amd64) having its live patch applied, with the real builder and
# smoke test, two kernel builds at once and then one at a time, warm caches
# (made first, untimed); see docs/benchmarks.md, section "Patch factory".
.PHONY: bench-factory
bench-factory: deps
	$(GO) run ./internal/tools/benchfactory
