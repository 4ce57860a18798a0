#!/usr/bin/env bash
# The whole suite, as `make test` runs it: every package's tests, with the
# longest one, the real-system fleet scenario (internal/fleetvm, about 15
# minutes of four emulated Debian hosts), started first in a go test of its
# own beside the rest, so that the two overlap instead of the fleet starting
# last, when the rest of the suite is done with one of the two cores.
# When a test fails, its output is printed again at the very end, after
# both runs, so that a log cut in the middle still shows why.
# Environment: GO (default go), GOTESTFLAGS (passed to both), TIMEOUT
# (go test -timeout, default 80m).
set -uo pipefail
GO=${GO:-go}
TIMEOUT=${TIMEOUT:-80m}
long=github.com/stent-dev/stent/internal/fleetvm
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# shellcheck disable=SC2086
( "$GO" test -timeout "$TIMEOUT" ${GOTESTFLAGS:-} "$long" 2>&1 | tee "$logs/long"; exit "${PIPESTATUS[0]}" ) &
longpid=$!
trap 'kill "$longpid" 2>/dev/null; rm -rf "$logs"' INT TERM
rest=$("$GO" list ./... | grep -v -x -F "$long") || { echo "test.sh: go list failed" >&2; wait "$longpid"; exit 1; }
# shellcheck disable=SC2086
"$GO" test -timeout "$TIMEOUT" ${GOTESTFLAGS:-} $rest 2>&1 | tee "$logs/rest"
restrc=${PIPESTATUS[0]}
wait "$longpid"
longrc=$?
if [ "$restrc" -ne 0 ] || [ "$longrc" -ne 0 ]; then
	# Each failed test's own lines: from its "--- FAIL" line to the next
	# test's or package's line (at most 60 lines per test).
	echo
	echo "=== failures (again, from the output above) ==="
	awk '/^--- FAIL|^    --- FAIL/ {on=1; n=0}
	     on && (/^(=== |--- PASS|--- SKIP|ok |FAIL|PASS)/ && !/^--- FAIL/) {on=0}
	     on && n++ < 60 {print}
	     /^(FAIL|panic:)/ {print}' "$logs/rest" "$logs/long"
	echo "FAIL: go test exit status $restrc (the suite), $longrc ($long)" >&2
	exit 1
fi
