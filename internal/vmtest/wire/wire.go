// Package wire defines the messages vmtest sends to its command runner in the
// guest (internal/tools/guestrun) over the control serial port.
//
// The protocol is one JSON object per line in each direction. The host sends
// Requests; the guest answers each with a Response of the same ID, in any
// order (requests run concurrently). When the runner starts it sends a
// Response with ID 0 and Ready set. []byte fields travel as base64, so no
// line ever holds a raw newline or control byte.
package wire

// Ops of a Request.
const (
	OpRun      = "run"      // run Argv; answer Stdout, Stderr, Exit
	OpWrite    = "write"    // write Data to Path with Mode, creating folders
	OpRead     = "read"     // answer the contents of Path in Data
	OpPoweroff = "poweroff" // sync, unmount, answer, then power the guest off
)

// Request is one command from the host.
type Request struct {
	ID        uint64   `json:"id"`
	Op        string   `json:"op"`
	Argv      []string `json:"argv,omitempty"`
	Env       []string `json:"env,omitempty"` // added to the runner's default environment
	Dir       string   `json:"dir,omitempty"`
	Stdin     []byte   `json:"stdin,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"` // 0: the runner's default
	Path      string   `json:"path,omitempty"`
	Data      []byte   `json:"data,omitempty"`
	Mode      uint32   `json:"mode,omitempty"` // permission bits for OpWrite; 0 means 0644
	// BootID, when set, must equal the guest's
	// /proc/sys/kernel/random/boot_id: a request queued before a guest
	// reboot (a guest that reboots under one QEMU, as debvm's do) is
	// refused instead of run in the next boot.
	BootID string `json:"boot_id,omitempty"`
}

// Response answers the Request with the same ID.
type Response struct {
	ID       uint64 `json:"id"`
	Ready    bool   `json:"ready,omitempty"`   // the runner's greeting (ID 0)
	Uname    string `json:"uname,omitempty"`   // with Ready: the guest's uname -r
	BootID   string `json:"boot_id,omitempty"` // with Ready: the guest's boot_id
	Stdout   []byte `json:"stdout,omitempty"`  // OpRun
	Stderr   []byte `json:"stderr,omitempty"`  // OpRun
	Exit     int    `json:"exit"`              // OpRun: exit status, 128+n when killed by signal n
	TimedOut bool   `json:"timed_out,omitempty"`
	// OpRun: wall time from start to exit, measured in the guest, and the
	// peak resident set size of the command and its reaped descendants.
	DurationNS int64  `json:"duration_ns,omitempty"`
	MaxRSSKB   int64  `json:"max_rss_kb,omitempty"`
	Data       []byte `json:"data,omitempty"`  // OpRead
	Error      string `json:"error,omitempty"` // the request could not be carried out
}
