# CriRuntime: `make run` starts the daemon, `make test` runs every test. Both install what is
# missing first (Debian packages via hack/deps.sh, NuGet packages via restore).
.PHONY: all deps build publish run test test-unit test-e2e bench install uninstall clean

CONFIGURATION ?= Debug
DOTNET ?= dotnet
# What `make run`, the e2e tests and the benchmark run: the daemon and the shim, both NativeAOT,
# side by side (the daemon finds criruntime-shim, criruntime-stream-server, criruntime-pod-init and
# criruntime-nsexec next to itself; the shim finds criruntime-nsexec and criruntime-monitor next to
# itself).
DIST := artifacts/dist
BIN := $(DIST)/criruntime
POD_INIT_CFLAGS ?= -O2 -Wall -Wextra -Werror -std=gnu11
# Extra flags for `make run`, e.g. make run ARGS="--log-level debug"
ARGS ?=

all: build

deps:
	hack/deps.sh

build:
	$(DOTNET) build CriRuntime.sln -c $(CONFIGURATION) -nologo -clp:ErrorsOnly
	$(MAKE) --no-print-directory publish
	# The JIT daemon of the solution build finds the shim and pod init next to it too
	# (debugging: CRIRUNTIME_BIN=...).
	cp $(DIST)/criruntime-shim $(DIST)/criruntime-stream-server $(DIST)/criruntime-monitor $(DIST)/criruntime-pod-init $(DIST)/criruntime-nsexec artifacts/bin/Runtime/$(shell echo $(CONFIGURATION) | tr A-Z a-z)/

publish:
	$(DOTNET) publish src/Shim/Shim.csproj -c Release -nologo -clp:ErrorsOnly -o $(DIST)/
	$(DOTNET) publish src/Runtime/Runtime.csproj -c Release -nologo -clp:ErrorsOnly -o $(DIST)/
	# The stream server (exec/attach/port-forward sessions): the daemon's streaming code alone.
	$(DOTNET) publish src/StreamServer/StreamServer.csproj -c Release -nologo -clp:ErrorsOnly -o $(DIST)/
	# The pod init (pid 1 of a pod's shared pid namespace) is plain C: one runs per such pod.
	$(CC) $(POD_INIT_CFLAGS) -o $(DIST)/criruntime-pod-init src/PodInit/pod-init.c
	# User namespaces: a .NET process has threads, and only a single-threaded one may enter one.
	$(CC) $(POD_INIT_CFLAGS) -o $(DIST)/criruntime-nsexec src/NsExec/nsexec.c
	# The idle shim: the shim execs this small C monitor once its container runs (issue 18).
	$(CC) $(POD_INIT_CFLAGS) -o $(DIST)/criruntime-monitor src/Monitor/monitor.c

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
# docs/benchmarks.md. Measures the NativeAOT daemon and shim of $(DIST).
# Flags: make bench BENCH_ARGS=--help
BENCH_ARGS ?=
bench:
	hack/deps.sh --bench
	# Only what is measured and the bench itself, not the tests.
	$(DOTNET) build hack/bench/Bench.csproj -c Release -nologo -clp:ErrorsOnly
	$(MAKE) --no-print-directory publish
	artifacts/bin/Bench/release/criruntime-bench $(BENCH_ARGS)

# Install as a node service (README "Install as a service"): the binaries `make build` published,
# the systemd unit, and /etc/criruntime/config.toml and /etc/crictl.yaml only where absent.
# make install [PREFIX=/usr/local] [DESTDIR=/staging]; `make uninstall` with the same values
# removes the binaries and the unit and leaves configuration alone.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/criruntime
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
INSTALL_BINS := criruntime criruntime-shim criruntime-stream-server criruntime-monitor criruntime-pod-init criruntime-nsexec
install:
	@for b in $(INSTALL_BINS); do [ -x $(DIST)/$$b ] || { echo "$(DIST)/$$b missing: run make build first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/criruntime/conf.d $(DESTDIR)$(DOCDIR)
	install -m 0755 $(addprefix $(DIST)/,$(INSTALL_BINS)) $(DESTDIR)$(BINDIR)/
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' hack/install/criruntime.service > $(DESTDIR)$(UNITDIR)/criruntime.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/criruntime.service
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	[ -e $(DESTDIR)$(SYSCONFDIR)/criruntime/config.toml ] || install -m 0644 hack/install/config.toml $(DESTDIR)$(SYSCONFDIR)/criruntime/config.toml
	[ -e $(DESTDIR)$(SYSCONFDIR)/crictl.yaml ] || install -m 0644 hack/install/crictl.yaml $(DESTDIR)$(SYSCONFDIR)/crictl.yaml

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(INSTALL_BINS)) $(DESTDIR)$(UNITDIR)/criruntime.service
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf artifacts
