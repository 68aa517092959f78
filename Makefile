# CriRuntime: `make run` starts the daemon, `make test` runs every test. Both install what is
# missing first (Debian packages via hack/deps.sh, NuGet packages via restore).
.PHONY: all deps build run test test-unit test-e2e bench clean

CONFIGURATION ?= Debug
DOTNET ?= dotnet
BIN := artifacts/bin/Runtime/$(shell echo $(CONFIGURATION) | tr A-Z a-z)/criruntime
POD_INIT_CFLAGS ?= -O2 -Wall -Wextra -Werror -std=gnu11
# Extra flags for `make run`, e.g. make run ARGS="--log-level debug"
ARGS ?=

all: build

deps:
	hack/deps.sh

build:
	$(DOTNET) build CriRuntime.sln -c $(CONFIGURATION) -nologo -clp:ErrorsOnly
	# The shim is NativeAOT (small, fast to start); the daemon finds it next to its own binary.
	$(DOTNET) publish src/Shim/Shim.csproj -c Release -nologo -clp:ErrorsOnly -o $(dir $(BIN))
	# The pod init (pid 1 of a pod's shared pid namespace) is plain C: one runs per such pod.
	$(CC) $(POD_INIT_CFLAGS) -o $(dir $(BIN))criruntime-pod-init src/PodInit/pod-init.c

run: deps build
	hack/cni-default.sh
	$(BIN) serve $(ARGS)

test: deps build
	hack/test.sh $(CONFIGURATION)

test-unit: build
	hack/test.sh $(CONFIGURATION) unit

test-e2e: deps build
	hack/test.sh $(CONFIGURATION) e2e

# Benchmarks side by side with containerd (hack/bench): prints the table and writes
# docs/benchmarks.md. Measures a Release daemon; flags: make bench BENCH_ARGS=--help
BENCH_CONFIGURATION ?= Release
BENCH_ARGS ?=
BENCH_DIR := artifacts/bin/Runtime/$(shell echo $(BENCH_CONFIGURATION) | tr A-Z a-z)
bench:
	hack/deps.sh --bench
	# Only what is measured (the bench builds the daemon through its project reference), not the tests.
	$(DOTNET) build hack/bench/Bench.csproj -c $(BENCH_CONFIGURATION) -nologo -clp:ErrorsOnly
	$(DOTNET) publish src/Shim/Shim.csproj -c Release -nologo -clp:ErrorsOnly -o $(BENCH_DIR)/
	$(CC) $(POD_INIT_CFLAGS) -o $(BENCH_DIR)/criruntime-pod-init src/PodInit/pod-init.c
	artifacts/bin/Bench/$(shell echo $(BENCH_CONFIGURATION) | tr A-Z a-z)/criruntime-bench --configuration $(BENCH_CONFIGURATION) $(BENCH_ARGS)

clean:
	rm -rf artifacts
