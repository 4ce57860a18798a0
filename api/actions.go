package api

import (
	"context"
	"net/http"
	"time"
)

// The live plan's actions: stent-server proposes, per kernel situation
// group, the actions of its hosts' plans that it can carry out itself
// (applying a published live patch, rebooting into a fixed kernel), carries
// out the kinds the policy's "unattended" list allows, and keeps the
// others for an operator's approval.
const (
	PathActions = "/v1/admin/actions" // GET ActionList (?all=1: done ones too); POST /<id>/approve ActionApproval -> PlanAction
)

// Action states.
const (
	ActionProposed = "proposed" // waits for an operator's approval
	ActionStarted  = "started"  // carried out: a rollout or kernel rollout runs
	ActionDone     = "done"     // no host's plan has it any more
)

// MaxActionHosts bounds PlanAction.Hosts in answers; HostCount is whole.
const MaxActionHosts = 1000

// PlanAction is one proposed action for the hosts of one kernel situation
// group: its idempotency key is the group, the kind and the target, so it
// never starts twice.
type PlanAction struct {
	ID    string `json:"id"`
	Key   string `json:"key"`  // kind/group/target
	Kind  string `json:"kind"` // apply-livepatch, emergency-reboot, reboot
	Group string `json:"group"`
	// Target is what the action applies: the live patch's name, or the
	// kernel release to boot.
	Target string `json:"target"`
	// Version and Packages are set when the kernel to boot must be
	// installed first (the plan's "upgrade" before the reboot): the
	// package version of Target's image and the packages the kernel
	// rollout installs (the image and the metapackage).
	Version   string     `json:"version,omitempty"`
	Packages  []string   `json:"packages,omitempty"`
	Summary   string     `json:"summary"`
	Deadline  *time.Time `json:"deadline,omitempty"`
	CVEs      []string   `json:"cves,omitempty"`
	Hosts     []string   `json:"hosts"` // host ids whose plan has the action
	HostCount int        `json:"host_count"`
	State     string     `json:"state"`
	// Unattended is set when the policy let the server carry it out.
	Unattended bool      `json:"unattended,omitempty"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	ApprovedAt time.Time `json:"approved_at,omitzero"`
	// Started are the hosts a rollout was started for, Refs the rollouts
	// (live patch) or kernel rollouts (reboots): a host that joins the
	// group later gets one of its own, the others none again.
	Started []string `json:"started,omitempty"`
	Refs    []string `json:"refs,omitempty"`
	// Error says why the action could not be carried out (the live patch
	// is not published here; the kernel to boot is not installed yet).
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ActionList is the live plan's actions, proposed first.
type ActionList struct {
	PolicyVersion int          `json:"policy_version"`
	Unattended    []string     `json:"unattended"` // the kinds the policy lets run
	Actions       []PlanAction `json:"actions"`
}

// ActionApproval approves a proposed action.
type ActionApproval struct {
	Reason string `json:"reason,omitempty"`
}

// Actions lists the live plan's actions; all includes the done ones.
func (c *Client) Actions(ctx context.Context, all bool) (*ActionList, error) {
	p := PathActions
	if all {
		p += "?all=1"
	}
	return call[*ActionList](ctx, c, http.MethodGet, p, nil)
}

// ApproveAction approves a proposed action, which the server then carries
// out.
func (c *Client) ApproveAction(ctx context.Context, id string, req ActionApproval) (*PlanAction, error) {
	return callItem[*PlanAction](ctx, c, http.MethodPost, "action id", PathActions, req, id, "approve")
}
