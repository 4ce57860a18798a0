package debvm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/stent-dev/stent/internal/vmtest/wire"
)

// ErrRebooted is returned (wrapped) by a request whose answer was lost
// because the guest rebooted (or its runner restarted) meanwhile.
var ErrRebooted = errors.New("the guest rebooted before answering")

// ctl speaks vmtest's wire protocol with guestrun over the virtio-serial
// port. Unlike vmtest's client it lives across guest reboots: QEMU keeps
// the socket, each boot's runner greets again with its boot_id, and every
// request names the boot it is meant for.
type ctl struct {
	conn net.Conn
	wmu  sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan wire.Response
	up      bool
	upCh    chan struct{} // closed while up
	bootID  string
	uname   string
	greets  int
	done    chan struct{}
	err     error
}

func newCtl(conn net.Conn) *ctl {
	c := &ctl{conn: conn, pending: map[uint64]chan wire.Response{}, upCh: make(chan struct{}), done: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *ctl) readLoop() {
	r := bufio.NewReaderSize(c.conn, 1<<20)
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var resp wire.Response
		if json.Unmarshal(line, &resp) != nil {
			continue
		}
		if resp.Ready {
			c.mu.Lock()
			c.failPending(ErrRebooted.Error())
			c.bootID, c.uname, c.up = resp.BootID, resp.Uname, true
			c.greets++
			close(c.upCh)
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		ch := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("guest control channel closed: %w", err)
	c.failPending(c.err.Error())
	c.mu.Unlock()
	close(c.done)
}

// failPending ends the requests in flight with msg; c.mu is held.
func (c *ctl) failPending(msg string) {
	for id, ch := range c.pending {
		ch <- wire.Response{ID: id, Error: msg}
		delete(c.pending, id)
	}
}

// down marks the runner gone (a new boot started on the console).
func (c *ctl) down() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failPending(ErrRebooted.Error())
	if c.up {
		c.up = false
		c.upCh = make(chan struct{})
	}
}

// ready waits until a runner has greeted and returns its uname and boot id.
func (c *ctl) ready(ctx context.Context) (uname, bootID string, err error) {
	for {
		c.mu.Lock()
		up, ch := c.up, c.upCh
		uname, bootID = c.uname, c.bootID
		c.mu.Unlock()
		if up {
			return uname, bootID, nil
		}
		select {
		case <-ch:
		case <-c.done:
			return "", "", c.err
		case <-ctx.Done():
			return "", "", fmt.Errorf("waiting for the guest's runner: %w", ctx.Err())
		}
	}
}

// do sends req to the current boot's runner (waiting for one) and waits
// for its answer.
func (c *ctl) do(ctx context.Context, req wire.Request) (wire.Response, error) {
	if _, bootID, err := c.ready(ctx); err != nil {
		return wire.Response{}, err
	} else {
		req.BootID = bootID
	}
	ch := make(chan wire.Response, 1)
	c.mu.Lock()
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
		if resp.Error == ErrRebooted.Error() || strings.HasPrefix(resp.Error, "request for boot ") {
			return resp, ErrRebooted
		}
		return resp, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
		return wire.Response{}, ctx.Err()
	}
}
