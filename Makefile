# remotegpu build, test and run targets. Every target works on a fresh
# machine with Go installed; modules come from the Go module proxy.

GO ?= go
BIN := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/YoungBoyGod/remotegpu/pkg/version.Version=$(VERSION)

# go-nvml's cgo wrappers call NVML functions that the header marks
# deprecated; the warnings say nothing about remotegpu, so silence them.
export CGO_CFLAGS := -O2 -g -Wno-deprecated-declarations
export CGO_ENABLED := 1

# Tests may take this long in total before go test stops them.
TEST_TIMEOUT ?= 9m

.PHONY: all build test test-short lint fmt run bench clean

all: lint build test

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./agent/cmd/remotegpu-agent ./coordinator/cmd/remotegpu-coordinator

# test runs every package with the race detector, the integration suite
# included.
test: build
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# test-short skips the slow process-level tests.
test-short:
	$(GO) test -race -count=1 -short ./...

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

# run starts the coordinator with its embedded etcd and one agent on this
# machine, makes an allocation and keeps running until Ctrl-C.
run: build
	./scripts/run.sh

bench: build
	./scripts/bench.sh

clean:
	rm -rf $(BIN) .run
