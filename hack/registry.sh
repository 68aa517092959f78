#!/usr/bin/env bash
# Run a private instance of Debian's docker-registry (distribution 2.8) for tests.
#   hack/registry.sh start DIR PORT [--htpasswd FILE]   -> serves http://127.0.0.1:PORT, pid in DIR/registry.pid
#   hack/registry.sh stop DIR
# DIR holds config.yml, storage/, registry.log and registry.pid; storage survives stop/start.
# htpasswd FILE must use bcrypt entries (htpasswd -Bbn user pass): distribution rejects others.
set -euo pipefail
BIN=/usr/bin/docker-registry
usage() { echo "usage: $0 start DIR PORT [--htpasswd FILE] | stop DIR" >&2; exit 2; }

# pid from DIR/registry.pid if it is still a docker-registry (guards against pid reuse).
running_pid() {
  local pid
  pid=$(cat "$1/registry.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == docker-registry ]] && alive "$pid" && echo "$pid"
}

# true unless gone or a zombie (whose reaping is up to whatever parent it was reparented to).
alive() { local st; st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) && [[ $st != Z ]]; }

stop() {
  local dir=$1 pid i
  if pid=$(running_pid "$dir"); then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/registry.pid"
}

start() {
  local dir=$1 port=$2 htpasswd="" i code pid
  shift 2
  [[ $# -eq 0 ]] || { [[ $# -eq 2 && $1 == --htpasswd ]] || usage; htpasswd=$(realpath "$2"); }
  [[ -z $htpasswd || -f $htpasswd ]] || { echo "no such htpasswd file: $htpasswd" >&2; exit 1; }
  [[ -x $BIN ]] || { echo "$BIN missing (run hack/deps.sh)" >&2; exit 1; }
  mkdir -p "$dir/storage"; dir=$(realpath "$dir")
  stop "$dir"   # restarting picks up a changed port/auth; storage is kept
  # A listener already on PORT would answer our readiness probe while ours fails to bind.
  if [[ -n $(ss -Hltn "sport = :$port") ]]; then echo "port $port is already in use" >&2; exit 1; fi

  {
    echo "version: 0.1"
    echo "log: {level: info, formatter: text}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: $dir/storage}"
    echo "  delete: {enabled: true}"
    echo "  maintenance: {uploadpurging: {enabled: false}}"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    # A fixed secret silences the "No HTTP secret provided" warning; only used to sign upload state.
    echo "  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    if [[ -n $htpasswd ]]; then
      echo "auth:"
      echo "  htpasswd: {realm: cri-test-registry, path: $htpasswd}"
    fi
  } >"$dir/config.yml"

  # REGISTRY_* variables override config.yml keys in distribution; don't let stray ones in.
  for v in $(compgen -e | grep '^REGISTRY_' || true); do unset "$v"; done
  # Own session so the caller's Ctrl-C/process-group kill doesn't take it down; the inner
  # shell writes its own pid and execs, so registry.pid is the registry's pid.
  # shellcheck disable=SC2016  # $$, $1, $2 are for the inner shell
  setsid bash -c 'echo $$ >"$1/registry.pid"; exec "$2" serve "$1/config.yml"' _ "$dir" "$BIN" \
    </dev/null >"$dir/registry.log" 2>&1 &

  for ((i = 0; i < 100; i++)); do   # up to ~10 s
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
    if [[ $code == 200 || ($code == 401 && -n $htpasswd) ]] && pid=$(running_pid "$dir"); then
      return 0
    fi
    sleep 0.1
  done
  echo "registry did not come up on 127.0.0.1:$port (last HTTP code $code); log:" >&2
  tail -n 20 "$dir/registry.log" >&2
  stop "$dir"
  exit 1
}

case "${1:-}" in
  start) [[ $# -ge 3 ]] || usage; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
