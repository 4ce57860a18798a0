package kpkg

import (
	"context"
	"time"

	"github.com/stent-dev/stent/internal/flock"
)

// Lock takes an exclusive flock(2) on path, creating it and its folder if
// needed, and returns the function that releases it. It waits until the lock
// is free or ctx is done. Fetch and vmtest use it to keep parallel test
// processes (go test ./... runs packages at once) from building the same
// cache entry twice.
func Lock(ctx context.Context, path string) (unlock func(), err error) {
	return flock.Lock(ctx, path, flock.Options{Poll: 100 * time.Millisecond})
}
