package debvm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Line is one line of a host's serial console.
type Line struct {
	Index int       // position in the console, from 0
	Time  time.Time // host wall clock when the line's first byte arrived from QEMU
	Text  string    // without the newline, carriage returns and terminal escapes
}

// BootInfo is one boot of a host seen on its console: the kernel's
// "Linux version ..." line.
type BootInfo struct {
	Kernel string    // uname -r of the kernel that started
	Time   time.Time // when its "Linux version" line arrived
	Line   int       // Index of the "Linux version" line
	// Down is when the previous boot began to go away: its "debvm: <name>
	// going down" line (printed as systemd starts stopping services), else
	// a "Kernel panic" or "reboot:" line; zero for the first boot. Up is
	// when this boot printed "debvm: <name> up on <release>" (after
	// network-online, the first-boot packages and the boot script); zero
	// until then. [Down, Up] is the host's outage around a reboot.
	Down, Up time.Time
}

var (
	downRE = regexp.MustCompile(`^debvm: \S+ going down|Kernel panic - not syncing|^\[[ 0-9.]+\] reboot: `)
	upRE   = regexp.MustCompile(`^debvm: \S+ up on `)
)

// bootTracker turns console lines into boots.
type bootTracker struct {
	boots []BootInfo
	down  time.Time
}

// track notes l and returns the new boot it starts, if any.
func (b *bootTracker) track(l Line) *BootInfo {
	if m := linuxVersionRE.FindStringSubmatch(l.Text); m != nil {
		b.boots = append(b.boots, BootInfo{Kernel: m[1], Time: l.Time, Line: l.Index, Down: b.down})
		b.down = time.Time{}
		return &b.boots[len(b.boots)-1]
	}
	if n := len(b.boots); n > 0 && b.boots[n-1].Up.IsZero() && upRE.MatchString(l.Text) {
		b.boots[n-1].Up = l.Time
	} else if n > 0 && b.down.IsZero() && downRE.MatchString(l.Text) {
		b.down = l.Time
	}
	return nil
}

// timeFormat prefixes every line of console.log.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

// console reads QEMU's serial port and keeps its lines, timestamped.
type console struct {
	mu      sync.Mutex
	lines   []Line
	boots   bootTracker
	changed chan struct{} // closed and replaced when a line arrives
	closed  bool
	log     io.Writer      // console.log
	onBoot  func(BootInfo) // called with mu held; must not call back
}

func newConsole(log io.Writer, onBoot func(BootInfo)) *console {
	return &console{changed: make(chan struct{}), log: log, onBoot: onBoot}
}

var (
	ansiRE         = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-Z\\-_])`)
	ansiPrefixRE   = regexp.MustCompile(`^(\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-Z\\-_])|[\x00-\x20])*\x1b(\[[0-9;?]*[ -/]*)?$`)
	linuxVersionRE = regexp.MustCompile(`Linux version (\S+) \(`)
)

// cleanLine removes terminal escapes (GRUB draws its menu with them) and
// other control bytes.
func cleanLine(s string) string {
	s = ansiRE.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// read consumes r (the serial chardev) until it ends.
func (c *console) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var cur []byte
	var start time.Time
	blank := true // cur holds no visible text yet
	for {
		b, err := br.ReadByte()
		if err != nil {
			if len(cur) > 0 {
				c.add(start, string(cur))
			}
			c.mu.Lock()
			c.closed = true
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			return
		}
		// A line's time is when its first visible byte came: GRUB leaves
		// terminal escapes without a newline before the kernel's first line.
		if b != '\n' && blank && len(cur) < 512 {
			// cur may end inside an escape sequence: look again at the next byte.
			if cleanLine(string(cur)) == "" || ansiPrefixRE.MatchString(string(cur)) {
				start = time.Now()
			} else {
				blank = false
			}
		}
		if b == '\n' {
			if start.IsZero() {
				start = time.Now()
			}
			c.add(start, string(cur))
			cur, start, blank = cur[:0], time.Time{}, true
			continue
		}
		cur = append(cur, b)
	}
}

func (c *console) add(t time.Time, raw string) {
	text := cleanLine(raw)
	c.mu.Lock()
	l := Line{Index: len(c.lines), Time: t, Text: text}
	c.lines = append(c.lines, l)
	if b := c.boots.track(l); b != nil && c.onBoot != nil {
		// Before waiters wake: one that saw this boot must not find the
		// previous boot's runner still marked up.
		c.onBoot(*b)
	}
	fmt.Fprintf(c.log, "%s %s\n", t.Format(timeFormat), text)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// wait returns the first line at or after index since that matches re.
func (c *console) wait(ctx context.Context, since int, re *regexp.Regexp) (Line, error) {
	for {
		c.mu.Lock()
		for i := max(since, 0); i < len(c.lines); i++ {
			if re.MatchString(c.lines[i].Text) {
				l := c.lines[i]
				c.mu.Unlock()
				return l, nil
			}
		}
		since = len(c.lines)
		ch, closed := c.changed, c.closed
		c.mu.Unlock()
		if closed {
			return Line{}, fmt.Errorf("console: no line matching %q: QEMU has exited", re)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Line{}, fmt.Errorf("console: no line matching %q: %w", re, ctx.Err())
		}
	}
}

func (c *console) snapshot() ([]Line, []BootInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...), append([]BootInfo(nil), c.boots.boots...)
}

func (c *console) tail(n int) string {
	lines, _ := c.snapshot()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %s\n", l.Time.Format("15:04:05.000"), l.Text)
	}
	return b.String()
}

// ParseConsoleLog reads a console.log written by a Host back into lines and
// boots, e.g. to compare the reboot times of several hosts after a test.
func ParseConsoleLog(path string) ([]Line, []BootInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var lines []Line
	var boots bootTracker
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ts, text, _ := strings.Cut(sc.Text(), " ")
		t, err := time.Parse(timeFormat, ts)
		if err != nil {
			return nil, nil, fmt.Errorf("%s line %d: bad timestamp %q", path, len(lines)+1, ts)
		}
		l := Line{Index: len(lines), Time: t, Text: text}
		lines = append(lines, l)
		boots.track(l)
	}
	return lines, boots.boots, sc.Err()
}
