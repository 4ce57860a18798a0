#!/bin/sh
# Run every fuzz target of the module (func Fuzz* in *_test.go) for
# FUZZTIME each (default 10s), one after the other; exit 1 if any fails.
# A failing input is kept under the package's testdata/fuzz/ by go test:
# commit it with the fix so it stays a regression test. PKGS narrows the
# packages (default ./...), RUN the targets (a regexp).
set -u
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
PKGS=${PKGS:-./...}
RUN=${RUN:-.}
failed=""
total=0
for pkg in $($GO list $PKGS); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	targets=$(grep -h -o '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | grep -E "$RUN" | sort -u)
	for t in $targets; do
		total=$((total + 1))
		echo "== $pkg $t ($FUZZTIME)"
		if ! $GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$pkg"; then
			failed="$failed $pkg.$t"
		fi
	done
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed"
	exit 1
fi
echo "fuzz: $total targets clean for $FUZZTIME each"
