package server

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket per key (a host id): burst calls at once,
// then one per every. It bounds what one host credential can make the
// server store.
type rateLimiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// Report limits: an agent reports once per action it takes (apply, revert,
// reboot), a few a day; a burst covers a host catching up after an outage.
const (
	reportBurst = 60
	reportEvery = 30 * time.Second
)

// allow takes a token from key's bucket at now, or reports how long until
// one is there.
func (l *rateLimiter) allow(key string, now time.Time, burst int, every time.Duration) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(burst), at: now}
		l.buckets[key] = b
	}
	b.tokens = min(float64(burst), b.tokens+float64(now.Sub(b.at))/float64(every))
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(every))
}
