package server

import "sync"

// changes tells whoever waits that the server's state changed: a write
// committed to the store (a check-in, a report, a rollout's step) or the
// live plan was made again. The dashboard's server-sent events wait on it
// instead of polling.
type changes struct {
	mu sync.Mutex
	ch chan struct{} // closed at the next change; nil: nobody waits
}

// notify wakes every waiter.
func (c *changes) notify() {
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
	c.mu.Unlock()
}

// next returns a channel closed at the next change.
func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}
