package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/internal/atomicfile"
	"github.com/stent-dev/stent/inventory"
)

// inventoriesSummary is what "stent fleet inventories" did.
type inventoriesSummary struct {
	Out     string        `json:"out"`
	Hosts   int           `json:"hosts"`   // hosts the server sent
	Written int           `json:"written"` // inventory files written
	Bytes   int64         `json:"bytes"`   // their total size
	Missing []missingHost `json:"missing"` // hosts that never sent an inventory
	// Unreadable are hosts whose stored inventory the planner cannot read
	// (stored before the server checked them): not written, not planned.
	Unreadable []unreadableHost `json:"unreadable"`
	// Others are *.json files in Out this run did not write (a host since
	// revoked, an earlier export): "stent plan --inventory Out" reads them too.
	Others []string `json:"others"`
}

type missingHost struct {
	HostID   string    `json:"host_id"`
	Hostname string    `json:"hostname"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

type unreadableHost struct {
	HostID   string `json:"host_id"`
	Hostname string `json:"hostname"`
	Error    string `json:"error"`
}

func fleetInventoriesCmd(env *Env, sf *serverFlags) *cobra.Command {
	var out string
	var selector []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "inventories --out DIR [--selector k=v]",
		Short: "Write every enrolled host's latest inventory into a folder, for stent plan --inventory",
		Long: `Write every enrolled host's latest inventory (what its agent sent, the
JSON of "stent inventory --json") into DIR, one HOSTNAME_HOSTID.json file per
host, written atomically; DIR is created if missing. Hosts that never sent an
inventory are listed, not written; so are hosts whose stored inventory
"stent plan" cannot read (with the reason), so that one such host does not
fail the plan of the whole fleet. Then plan the fleet:

  stent fleet inventories --out inv/ && stent plan --inventory inv/ --feed ...

The inventories are streamed, host by host: a large fleet does not have to fit
in memory. Exit 0 also when some hosts have no inventory; 1 on an error (the
server failed midway, a file could not be written).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("no --out: give the folder to write the inventories into")
			}
			sel, err := api.ParseLabels(selector)
			if err != nil {
				return fmt.Errorf("--selector: %w", err)
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("inventory folder: %w", err)
			}
			sum := &inventoriesSummary{Out: out, Missing: []missingHost{}, Unreadable: []unreadableHost{}, Others: []string{}}
			written := map[string]bool{}
			n, err := c.Inventories(cmd.Context(), sel, func(h *api.HostInventory) error {
				if len(h.Inventory) == 0 {
					sum.Missing = append(sum.Missing, missingHost{HostID: h.HostID, Hostname: h.Hostname, LastSeen: h.LastSeen})
					return nil
				}
				// The planner's own decoder: what it cannot read is named here
				// and left out, instead of failing "stent plan" for everybody.
				if _, err := inventory.Decode(h.HostID, bytes.NewReader(h.Inventory)); err != nil {
					sum.Unreadable = append(sum.Unreadable, unreadableHost{HostID: h.HostID, Hostname: h.Hostname, Error: err.Error()})
					return nil
				}
				name := inventoryFileName(h.Hostname, h.HostID)
				if written[name] {
					return fmt.Errorf("host %s: file name %s taken by another host of this export", h.HostID, name)
				}
				var b bytes.Buffer
				if err := json.Indent(&b, h.Inventory, "", "  "); err != nil {
					return fmt.Errorf("host %s: inventory: %w", h.HostID, err)
				}
				b.WriteByte('\n')
				if err := atomicfile.Write(filepath.Join(out, name), b.Bytes(), 0o644); err != nil {
					return err
				}
				written[name] = true
				sum.Written++
				sum.Bytes += int64(b.Len())
				return nil
			})
			sum.Hosts = n
			if err != nil {
				return adminError(sf, err)
			}
			if others, err := filepath.Glob(filepath.Join(out, "*.json")); err == nil {
				for _, p := range others {
					if !written[filepath.Base(p)] {
						sum.Others = append(sum.Others, filepath.Base(p))
					}
				}
				sort.Strings(sum.Others)
			}
			if asJSON {
				return writeJSON(env.Stdout, sum)
			}
			return printInventoriesSummary(env.Stdout, sum)
		},
	}
	c.Flags().StringVar(&out, "out", "", "folder to write the inventories into (created if missing)")
	c.Flags().StringArrayVar(&selector, "selector", nil, "only hosts with this label key=value (repeatable)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return c
}

func printInventoriesSummary(w io.Writer, sum *inventoriesSummary) error {
	fmt.Fprintf(w, "Wrote %d of %d hosts' inventories to %s (%d bytes)\n", sum.Written, sum.Hosts, sum.Out, sum.Bytes)
	if len(sum.Missing) > 0 {
		fmt.Fprintf(w, "No inventory from %d hosts (agents that never reported one; not planned):\n", len(sum.Missing))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, m := range sum.Missing {
			seen := "never seen"
			if !m.LastSeen.IsZero() {
				seen = "last seen " + m.LastSeen.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", m.HostID, api.Escape(m.Hostname), seen)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(sum.Unreadable) > 0 {
		fmt.Fprintf(w, "Unreadable inventory from %d hosts (not written, not planned):\n", len(sum.Unreadable))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, u := range sum.Unreadable {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", u.HostID, api.Escape(u.Hostname), api.Escape(u.Error))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(sum.Others) > 0 {
		fmt.Fprintf(w, "%s also holds %d other *.json files, which stent plan --inventory %s reads too: %s\n",
			sum.Out, len(sum.Others), sum.Out, strings.Join(sum.Others, ", "))
	}
	return nil
}

// inventoryFileName is HOSTNAME_HOSTID.json with every byte but letters,
// digits, '.', '-' and '_' turned into '_' and leading dots dropped, so a
// name the agent chose can neither leave the folder nor hide the file; the
// host id keeps two hosts of one name apart.
func inventoryFileName(hostname, id string) string {
	clean := func(s string, max int) string {
		b := []byte(s)
		if len(b) > max {
			b = b[:max]
		}
		for i, c := range b {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				b[i] = '_'
			}
		}
		return strings.TrimLeft(string(b), ".")
	}
	name := clean(id, 100)
	if h := clean(hostname, 100); h != "" {
		name = h + "_" + name
	}
	if name == "" {
		name = "host"
	}
	return name + ".json"
}
