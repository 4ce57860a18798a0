// Package api defines the JSON wire types spoken between stent-server, the
// stent agent and the admin command line, the paths they are served at,
// and Client, which calls them (admin.go: one method per admin endpoint).
//
// The types are plain data: no I/O, no behaviour beyond encoding. The
// server, the agent and the CLI all import it so that a field renamed on one
// side is renamed on the others.
package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Paths of the HTTP API. Agent calls authenticate with a host credential,
// admin calls with an admin token; both as "Authorization: Bearer <token>".
const (
	PathEnroll      = "/v1/enroll"            // POST EnrollRequest -> EnrollResponse (enrollment token in body)
	PathSync        = "/v1/agent/sync"        // POST Checkin -> SyncResponse; ?wait=30s&etag=X long-polls
	PathReport      = "/v1/agent/report"      // POST Report -> ReportResponse
	PathBundles     = "/v1/bundles/"          // GET <sha256>: bundle bytes, HTTP Range supported
	PathAdmin       = "/v1/admin/"            // prefix of every admin call
	PathHosts       = "/v1/admin/hosts"       // GET []Host; GET/DELETE /<id>; PUT /<id>/labels HostLabelsRequest -> Host
	PathInventories = "/v1/admin/inventories" // GET: JSON lines, one HostInventory per host and an end line; ?label=k=v selects
	PathAdminBundle = "/v1/admin/bundles"     // POST bundle bytes -> BundleInfo; GET []BundleInfo
	PathRollouts    = "/v1/admin/rollouts"
	PathFleet       = "/v1/admin/fleet"         // GET FleetStatus
	PathAudit       = "/v1/admin/audit"         // GET []AuditEntry; ?action=&target=&after=&before=&order=newest&limit=
	PathTokens      = "/v1/admin/tokens"        // POST TokenRequest -> TokenResponse; GET; DELETE /<id>
	PathEnrollToken = "/v1/admin/enroll-tokens" // POST EnrollTokenRequest -> TokenResponse; GET; DELETE /<id>
	PathSettings    = "/v1/admin/settings"      // GET/PUT Settings
	PathRevert      = "/v1/admin/revert"        // POST RevertRequest -> []Rollout
	PathHealth      = "/healthz"
	PathMetrics     = "/metrics"
)

// Roles of admin tokens, each allowed what the one before it is.
const (
	RoleViewer   = "viewer"   // read fleet, hosts, rollouts, audit log
	RoleOperator = "operator" // publish, roll out, pause, resume, revert, enrollment tokens
	RoleAdmin    = "admin"    // admin tokens, host revocation, settings
)

// Duration is a time.Duration written as Go duration text ("1m30s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"` // machine-readable: "unauthorized", "not_found", ...
}

// CodeStandby is the Error.Code of the 503 a standby stent-server answers
// on every API path: another instance is active on the database.
const CodeStandby = "standby"

// EnrollRequest exchanges an enrollment token for a host credential.
type EnrollRequest struct {
	Token     string `json:"token"`
	Hostname  string `json:"hostname"`
	MachineID string `json:"machine_id,omitempty"`
	// Labels must be the enrollment token's (a host cannot choose its
	// own); an agent sends the ones it was started with to check that.
	Labels map[string]string `json:"labels,omitempty"`
	// Replaces is the credential of the host this enrollment replaces
	// (the same machine enrolling again). Without it, enrolling with the
	// machine ID or hostname of an enrolled host is refused (409) until an
	// operator revokes that host.
	Replaces string `json:"replaces,omitempty"`
}

// EnrollResponse carries the host's credential. The server keeps only its
// hash: lose it and the host must enroll again.
type EnrollResponse struct {
	HostID     string            `json:"host_id"`
	Credential string            `json:"credential"`
	Channel    string            `json:"channel"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// Health values an agent reports.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded" // post-apply checks failed
	HealthUnknown  = ""
)

// PatchState is one live patch as the host's runtime reports it.
type PatchState struct {
	Name       string `json:"name"`
	Level      int64  `json:"level,omitempty"`
	Bundle     string `json:"bundle,omitempty"` // sha256 of the bundle it came from, when known
	Enabled    bool   `json:"enabled"`
	Transition bool   `json:"transition,omitempty"`
}

// Checkin is what an agent reports on every sync.
type Checkin struct {
	Hostname      string       `json:"hostname,omitempty"`
	KernelRelease string       `json:"kernel_release,omitempty"`
	BuildID       string       `json:"build_id,omitempty"`
	BootID        string       `json:"boot_id,omitempty"`
	AgentVersion  string       `json:"agent_version,omitempty"`
	Health        string       `json:"health,omitempty"`
	HealthDetail  string       `json:"health_detail,omitempty"`
	Patches       []PatchState `json:"patches"`
	// AppliedETag is the desired state the agent has finished acting on.
	AppliedETag string `json:"applied_etag,omitempty"`
	// Inventory is sent when it changed since the last accepted check-in.
	Inventory json.RawMessage `json:"inventory,omitempty"`
	// Kernel is the host's kernel situation, from agents that manage
	// kernel updates and reboots.
	Kernel *KernelCheckin `json:"kernel,omitempty"`
}

// Actions in a desired state and in reports.
const (
	ActionApply  = "apply"
	ActionRevert = "revert"
	ActionReboot = "reboot" // reports only: the host booted since the last report
)

// DesiredPatch is one thing the server wants done on a host.
type DesiredPatch struct {
	Rollout       string `json:"rollout"`
	Action        string `json:"action"` // ActionApply or ActionRevert
	Name          string `json:"name"`
	Level         int64  `json:"level,omitempty"`
	KernelRelease string `json:"kernel_release,omitempty"`
	Bundle        string `json:"bundle,omitempty"` // sha256; fetch from PathBundles+Bundle
	Size          int64  `json:"size,omitempty"`
}

// DesiredState is everything the server wants on one host. ETag changes
// whenever the content does.
type DesiredState struct {
	ETag    string         `json:"etag"`
	Patches []DesiredPatch `json:"patches"`
	// Kernel is the kernel the host should install and boot, if any.
	Kernel *DesiredKernel `json:"kernel,omitempty"`
}

// SyncResponse answers a sync: the host's desired state and when to check
// in next at the latest.
type SyncResponse struct {
	Desired         DesiredState `json:"desired"`
	CheckinInterval Duration     `json:"checkin_interval"`
	ServerTime      time.Time    `json:"server_time"`
}

// Results of a report.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"
	ResultRefused = "refused" // the bundle failed hash or signature checks
)

// Report tells the server what an agent did. RequestID makes it idempotent:
// the agent keeps it until the server acknowledges, and the server applies a
// report with a RequestID it has seen once only.
type Report struct {
	RequestID string    `json:"request_id"`
	Action    string    `json:"action"`
	Rollout   string    `json:"rollout,omitempty"`
	Name      string    `json:"name,omitempty"`
	Bundle    string    `json:"bundle,omitempty"`
	Result    string    `json:"result"`
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at"`
	BootID    string    `json:"boot_id,omitempty"`
}

// ReportResponse acknowledges a report.
type ReportResponse struct {
	Duplicate bool `json:"duplicate,omitempty"` // seen before; nothing changed
}

// Host is the admin view of one enrolled host.
type Host struct {
	ID            string            `json:"id"`
	Hostname      string            `json:"hostname"`
	Channel       string            `json:"channel"`
	Labels        map[string]string `json:"labels,omitempty"`
	KernelRelease string            `json:"kernel_release,omitempty"`
	AgentVersion  string            `json:"agent_version,omitempty"`
	EnrolledAt    time.Time         `json:"enrolled_at"`
	LastSeen      time.Time         `json:"last_seen,omitzero"`
	Online        bool              `json:"online"`
	Health        string            `json:"health,omitempty"`
	Revoked       bool              `json:"revoked,omitempty"`
	Patches       []PatchState      `json:"patches,omitempty"`
	Inventory     json.RawMessage   `json:"inventory,omitempty"`
}

// HostInventory is one line of the PathInventories stream: an enrolled
// host's latest inventory (the JSON of "stent inventory --json"), absent
// when the host never sent one. The stream's last line has only End set;
// a stream without it was cut short.
type HostInventory struct {
	HostID    string            `json:"host_id,omitempty"`
	Hostname  string            `json:"hostname,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	LastSeen  time.Time         `json:"last_seen,omitzero"`
	Inventory json.RawMessage   `json:"inventory,omitempty"`
	End       *InventoryEnd     `json:"end,omitempty"`
}

// InventoryEnd closes a PathInventories stream.
type InventoryEnd struct {
	Hosts int `json:"hosts"` // host lines sent before it
}

// BundleInfo describes a published bundle.
type BundleInfo struct {
	SHA256        string    `json:"sha256"`
	Name          string    `json:"name"`
	KernelRelease string    `json:"kernel_release"`
	BuildID       string    `json:"build_id,omitempty"`
	Level         int64     `json:"level"`
	Replace       bool      `json:"replace,omitempty"`
	CVEs          []string  `json:"cves,omitempty"`
	Size          int64     `json:"size"`
	Published     time.Time `json:"published,omitzero"`
	PublishedBy   string    `json:"published_by,omitempty"`
}

// RolloutRequest starts a staged rollout of a published bundle.
type RolloutRequest struct {
	Bundle   string            `json:"bundle"`             // sha256 of a published bundle
	Channel  string            `json:"channel,omitempty"`  // hosts of this channel; default "stable"
	Selector map[string]string `json:"selector,omitempty"` // and with all these labels
	// Canary is how many hosts go first (hosts labelled canary=true first,
	// then others in a stable pseudo-random order). 0 means 1% (at least 1).
	Canary int `json:"canary,omitempty"`
	// Waves are cumulative percentages of the target released after the
	// canary wave, ending at 100; default [10, 50, 100].
	Waves []int `json:"waves,omitempty"`
	// MaxFailurePct halts the rollout when more than this percentage of the
	// hosts released so far failed (rounded down: with a canary of one
	// host, its failure halts); nil means 5, and 0 halts on the first
	// failure.
	MaxFailurePct *float64 `json:"max_failure_pct,omitempty"`
	// OfflineAfter is how long a released host may stay silent before a wave
	// stops waiting for it; default 5m.
	OfflineAfter Duration `json:"offline_after,omitempty"`
	// OnlyHosts, when set, limits the rollout to these host ids (with the
	// channel and selector, all must match): the live plan's actions roll
	// a live patch out to exactly the hosts that need it.
	OnlyHosts []string `json:"only_hosts,omitempty"`
}

// Rollout states.
const (
	RolloutRunning   = "running"
	RolloutPaused    = "paused"
	RolloutHalted    = "halted" // stopped by the failure threshold
	RolloutCompleted = "completed"
	RolloutReverting = "reverting"
	RolloutReverted  = "reverted"
)

// Per-host states within a rollout.
const (
	HostPending  = "pending"  // not released yet
	HostReleased = "released" // told to apply
	HostApplied  = "applied"  // reported success, health not confirmed yet
	HostHealthy  = "healthy"  // checked in healthy after applying
	HostFailed   = "failed"
	HostRefused  = "refused" // bundle failed hash or signature checks
	HostReverted = "reverted"
)

// RolloutCounts counts a rollout's hosts by state.
type RolloutCounts struct {
	Target   int `json:"target"`
	Pending  int `json:"pending"`
	Released int `json:"released"`
	Applied  int `json:"applied"` // applied or healthy
	Healthy  int `json:"healthy"`
	Failed   int `json:"failed"` // failed or refused
	Reverted int `json:"reverted"`
}

// Rollout is the admin view of a rollout.
type Rollout struct {
	ID            string            `json:"id"`
	Bundle        string            `json:"bundle"`
	Name          string            `json:"name"`
	KernelRelease string            `json:"kernel_release"`
	Level         int64             `json:"level"`
	Channel       string            `json:"channel"`
	Selector      map[string]string `json:"selector,omitempty"`
	OnlyHosts     []string          `json:"only_hosts,omitempty"`
	Canary        int               `json:"canary"`
	Waves         []int             `json:"waves"`
	MaxFailurePct float64           `json:"max_failure_pct"`
	OfflineAfter  Duration          `json:"offline_after"`
	State         string            `json:"state"`
	Wave          int               `json:"wave"` // released waves: 0 = canary, len(Waves) = all
	Reason        string            `json:"reason,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
	CreatedBy     string            `json:"created_by,omitempty"`
	Counts        RolloutCounts     `json:"counts"`
	Hosts         []RolloutHost     `json:"hosts,omitempty"` // only on GET of one rollout
}

// RolloutHost is one host's progress in a rollout.
type RolloutHost struct {
	HostID    string    `json:"host_id"`
	Hostname  string    `json:"hostname,omitempty"`
	Wave      int       `json:"wave"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// RolloutActionRequest pauses, resumes or reverts a rollout:
// POST PathRollouts/<id>/<action>.
type RolloutActionRequest struct {
	Reason string `json:"reason,omitempty"`
	// MaxFailurePct, on resume, replaces the rollout's failure threshold,
	// so a rollout halted by failures an operator accepts can go on.
	MaxFailurePct *float64 `json:"max_failure_pct,omitempty"`
}

// RevertRequest reverts a patch everywhere: every rollout of the patch name
// turns into a revert.
type RevertRequest struct {
	Name   string `json:"name"`
	Reason string `json:"reason,omitempty"`
}

// FleetStatus is the operator's overview.
type FleetStatus struct {
	Hosts       int            `json:"hosts"`
	Online      int            `json:"online"`
	Offline     int            `json:"offline"`
	Revoked     int            `json:"revoked"`
	Healthy     int            `json:"healthy"`
	Degraded    int            `json:"degraded"`
	ByKernel    map[string]int `json:"by_kernel,omitempty"`
	ByChannel   map[string]int `json:"by_channel,omitempty"`
	ByPatch     map[string]int `json:"by_patch,omitempty"` // hosts with the patch enabled
	Rollouts    []Rollout      `json:"rollouts"`
	GeneratedAt time.Time      `json:"generated_at"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID     int64           `json:"id"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"` // "token:<id> (<name>)", "host:<id>" or "server"
	Action string          `json:"action"`
	Target string          `json:"target,omitempty"`
	Detail json.RawMessage `json:"detail,omitempty"`
}

// TokenRequest creates an admin token.
type TokenRequest struct {
	Name string   `json:"name"`
	Role string   `json:"role"`
	TTL  Duration `json:"ttl,omitempty"` // 0: no expiry
}

// EnrollTokenRequest creates an enrollment token.
type EnrollTokenRequest struct {
	Name    string            `json:"name"`
	Channel string            `json:"channel,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	TTL     Duration          `json:"ttl,omitempty"`      // default 24h
	MaxUses int               `json:"max_uses,omitempty"` // 0: unlimited until it expires
}

// Token describes an admin or enrollment token; Secret is set only in the
// response that created it.
type Token struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Role      string            `json:"role,omitempty"`
	Channel   string            `json:"channel,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	MaxUses   int               `json:"max_uses,omitempty"`
	Uses      int               `json:"uses,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	ExpiresAt time.Time         `json:"expires_at,omitzero"`
	Revoked   bool              `json:"revoked,omitempty"`
	Secret    string            `json:"secret,omitempty"`
}

// Settings are server-wide knobs an admin can change at run time.
type Settings struct {
	CheckinInterval Duration `json:"checkin_interval"`
}

// ValidLabel reports whether k=v is an acceptable label.
func ValidLabel(k, v string) bool {
	if k == "" || len(k) > 63 || len(v) > 255 {
		return false
	}
	ok := func(s string) bool {
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/", r)) {
				return false
			}
		}
		return true
	}
	return ok(k) && ok(v)
}

// ParseLabels parses "k=v" strings.
func ParseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !ValidLabel(k, v) {
			return nil, fmt.Errorf("label %q: want key=value of letters, digits and ._-/", kv)
		}
		m[k] = v
	}
	return m, nil
}
