#!/usr/bin/env bash
# Runs the unit and e2e test projects (already built) and prints one summary line
# "tests: N passed, N failed, N skipped" that CI reads. Exit status is non-zero if any failed.
#   hack/test.sh [Debug|Release] [unit|e2e|all]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-Debug} which=${2:-all}
projects=()
[[ $which == all || $which == unit ]] && projects+=(tests/Unit/Unit.csproj)
[[ $which == all || $which == e2e ]] && projects+=(tests/e2e/E2E.csproj)
[[ $(id -u) -eq 0 ]] || echo "warning: e2e tests need root (namespaces, cgroups, mounts)" >&2

passed=0 failed=0 skipped=0 status=0
failures=()
for p in "${projects[@]}"; do
  log=$(mktemp)
  # --no-build: `make build` built everything once; the tests run that exact build.
  # --blame-hang-timeout: one test that hangs (no e2e test takes 10 minutes; the longest takes
  # about one) is named and its test host killed, rather than the run running into CI's limit.
  if ! dotnet test "$p" -c "$config" --no-build -nologo --logger "console;verbosity=normal" \
      --blame-hang-timeout 10m --blame-hang-dump-type none 2>&1 | tee "$log"; then
    status=1
  fi
  # The runner's closing block: "Total tests: N" then "Passed: N", "Failed: N", "Skipped: N" (zeros omitted).
  if ! grep -qE '^Total tests: [0-9]+' "$log"; then
    echo "$p: no test summary found" >&2; status=1
  fi
  count() { grep -E "^ +$1: [0-9]+\$" "$log" | tail -n 1 | grep -oE '[0-9]+' || echo 0; }
  passed=$((passed + $(count Passed))) failed=$((failed + $(count Failed))) skipped=$((skipped + $(count Skipped)))
  # Failed tests again, with the first lines of their message, so the end of the output
  # (all a CI log may keep) names them.
  while IFS= read -r line; do failures+=("$line"); done < <(
    grep -E -A6 '^ +Failed [A-Za-z_.]' "$log" | grep -vE '^ +Stack Trace:' | cut -c1-300 || true
    # A hang: the blame collector's lines name the test that was running.
    grep -iE -A1 'inactivity time|test running when the crash' "$log" | grep -vE '^--$' | cut -c1-300 || true)
  # The test a hang (or a crash) aborted counts as failed: the runner counts it nowhere.
  grep -q '^Test Run Aborted' "$log" && failed=$((failed + 1))
  rm -f "$log"
done
if ((${#failures[@]})); then
  echo "---- failed tests ----"
  printf '%s\n' "${failures[@]}"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 && $status -eq 0 ]]
