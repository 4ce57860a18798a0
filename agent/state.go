package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/atomicfile"
)

// Credentials are what enrollment gives a host: who it is and how to reach
// and trust its server. Stored with mode 0600.
type Credentials struct {
	Server      string            `json:"server"`
	HostID      string            `json:"host_id"`
	Credential  string            `json:"credential"`
	Fingerprint string            `json:"fingerprint,omitempty"`
	CAFile      string            `json:"ca_file,omitempty"`
	Channel     string            `json:"channel,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	EnrolledAt  time.Time         `json:"enrolled_at"`
}

// TLS returns the trust options of the credentials.
func (c *Credentials) TLS() api.TLSOptions {
	return api.TLSOptions{Fingerprint: c.Fingerprint, CAFile: c.CAFile}
}

const credentialsFile = "credentials.json"

// ErrNotEnrolled is returned by LoadCredentials when the host has not
// enrolled yet.
var ErrNotEnrolled = errors.New("not enrolled")

// LoadCredentials reads the credentials in dir.
func LoadCredentials(dir string) (*Credentials, error) {
	b, err := os.ReadFile(filepath.Join(dir, credentialsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s in %s; run stent agent --server URL --enroll TOKEN", ErrNotEnrolled, credentialsFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read credentials %s: %w", filepath.Join(dir, credentialsFile), err)
	}
	return &c, nil
}

// SaveCredentials writes c to dir with mode 0600.
func SaveCredentials(dir string, c *Credentials) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return atomicfile.Write(filepath.Join(dir, credentialsFile), b, 0o600)
}

// Op is one action the agent took or is taking: recorded as an intent
// before it starts and as a result when it ends, so that an agent killed in
// between neither forgets nor repeats it.
type Op struct {
	RequestID string    `json:"request_id"`
	Action    string    `json:"action"`
	Rollout   string    `json:"rollout"`
	Name      string    `json:"name"`
	Bundle    string    `json:"bundle,omitempty"`
	Done      bool      `json:"done"`
	Result    string    `json:"result,omitempty"`
	Error     string    `json:"error,omitempty"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
}

func opKey(action, rollout, name string) string { return action + "/" + rollout + "/" + name }

// State is the agent's persistent memory.
type State struct {
	BootID  string         `json:"boot_id,omitempty"`
	Ops     map[string]*Op `json:"ops"`
	Pending []api.Report   `json:"pending"` // reports the server has not acknowledged
	Kernel  KernelState    `json:"kernel,omitzero"`
}

// StateStore keeps State. The daemon uses a file; the fleet simulator keeps
// thousands of agents in memory.
type StateStore interface {
	Load() (*State, error)
	Save(*State) error
}

// FileState stores State as JSON at Path, written atomically.
type FileState struct{ Path string }

func (f FileState) Load() (*State, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return &State{Ops: map[string]*Op{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read agent state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read agent state %s: %w", f.Path, err)
	}
	if s.Ops == nil {
		s.Ops = map[string]*Op{}
	}
	return &s, nil
}

func (f FileState) Save(s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return fmt.Errorf("save agent state: %w", err)
	}
	return atomicfile.Write(f.Path, b, 0o600)
}

// MemState keeps State in memory (a deep copy, as a file would).
type MemState struct {
	mu sync.Mutex
	b  []byte
}

func (m *MemState) Load() (*State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &State{Ops: map[string]*Op{}}
	if m.b != nil {
		if err := json.Unmarshal(m.b, s); err != nil {
			return nil, err
		}
	}
	if s.Ops == nil {
		s.Ops = map[string]*Op{}
	}
	return s, nil
}

func (m *MemState) Save(s *State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.b = b
	m.mu.Unlock()
	return nil
}
