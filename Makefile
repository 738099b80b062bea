# dsh — see README.md. Every target installs what it needs (scripts/deps.sh).
GO      ?= go
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X dsh/internal/version.Version=$(VERSION)

.PHONY: all build test demo bench microbench lint deps fuzz fsx clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dsh ./cmd/dsh

deps:
	scripts/deps.sh test

test: deps
	scripts/test.sh

demo: build
	scripts/deps.sh demo
	scripts/demo.sh

# make bench: the table of dsh against the plain disk, go-fuse's loopback and gocryptfs
# (BENCH_QUICK=1: tiny sizes, to check the harness). BENCH_FLAGS passes more flags.
bench: build
	scripts/deps.sh bench
	$(GO) build -o bin/ceiling ./bench/ceiling
	$(GO) build -o bin/dshbench ./bench/dshbench
	bin/dshbench $(if $(BENCH_QUICK),-quick) $(BENCH_FLAGS)

# make microbench: the Go benchmarks of the packages.
microbench:
	$(GO) test -run '^$$' -bench . -benchmem ./vault/ ./audit/ ./blob/ ./kv/ ./metrics/ ./acl/ ./token/ ./meta/ ./content/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# make fsx: the model-checked random file operations (tests/fsx) for a million operations
# against a live mount (make test runs 100,000). DSH_FSX_SEED=N replays a failure.
fsx: deps
	DSH_FSX_OPS=$${DSH_FSX_OPS:-1000000} $(GO) test -count=1 -timeout 6h -v -run '^TestFsx$$' ./tests/

# A short run of every fuzz target; FUZZTIME=5m for a longer one.
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin demo
