package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"

	"github.com/stent-dev/stent/internal/vmtest/wire"
)

// client speaks the wire protocol with guestrun over QEMU's control socket.
// Requests may be issued concurrently; answers are matched by ID.
type client struct {
	conn  net.Conn
	ready chan struct{} // closed on the runner's greeting
	done  chan struct{} // closed when the connection is gone
	uname string        // set before ready is closed

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan wire.Response
	err     error // why the connection ended
}

func newClient(conn net.Conn, qemuExited <-chan struct{}) *client {
	c := &client{
		conn:    conn,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		pending: map[uint64]chan wire.Response{},
	}
	go c.readLoop()
	go func() {
		select {
		case <-qemuExited:
			c.conn.Close()
		case <-c.done:
		}
	}()
	return c
}

func (c *client) readLoop() {
	r := bufio.NewReaderSize(c.conn, 1<<20)
	readyOnce := sync.Once{}
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var resp wire.Response
		if json.Unmarshal(line, &resp) != nil {
			continue // not ours (e.g. noise before raw mode was set)
		}
		if resp.Ready {
			readyOnce.Do(func() {
				c.uname = resp.Uname
				close(c.ready)
			})
			continue
		}
		c.mu.Lock()
		ch := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- resp // buffered
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("guest control channel closed: %w", err)
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
}

// do sends req and waits for its answer.
func (c *client) do(ctx context.Context, req wire.Request) (wire.Response, error) {
	ch := make(chan wire.Response, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return wire.Response{}, err
	}
	c.nextID++
	req.ID = c.nextID
	c.pending[req.ID] = ch
	c.mu.Unlock()

	b, err := json.Marshal(req)
	if err != nil {
		return wire.Response{}, err
	}
	c.wmu.Lock()
	_, err = c.conn.Write(append(b, '\n'))
	c.wmu.Unlock()
	if err != nil {
		return wire.Response{}, fmt.Errorf("send to guest: %w", err)
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-c.done:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return wire.Response{}, err
	case <-ctx.Done():
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, req.ID)
		}
		c.mu.Unlock()
		return wire.Response{}, ctx.Err()
	}
}

func (c *client) poweroff(ctx context.Context) (wire.Response, error) {
	return c.do(ctx, wire.Request{Op: wire.OpPoweroff})
}
