package bootldr

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// The grubby path is tested only against recorded output (no
// RHEL-family machine runs here).

// parseGrubbyInfo parses grubby --info=ALL: blocks of key=value lines,
// each starting with index=N.
func parseGrubbyInfo(out []byte) []Entry {
	var es []Entry
	var cur *Entry
	flush := func() {
		if cur != nil && cur.Release != "" && !strings.Contains(cur.Release, "rescue") {
			es = append(es, *cur)
		}
		cur = nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "index":
			flush()
			cur = &Entry{}
		case "kernel":
			if cur != nil {
				cur.Release = strings.TrimPrefix(path.Base(v), "vmlinuz-")
			}
		case "title":
			if cur != nil {
				cur.Title = v
			}
		case "id":
			if cur != nil {
				cur.ID = v
			}
		}
	}
	flush()
	return es
}

func (l *Loader) grubbyEntries(ctx context.Context) ([]Entry, error) {
	out, err := l.run(ctx, "grubby", "--info=ALL")
	if err != nil {
		return nil, err
	}
	return parseGrubbyInfo(out), nil
}

func (l *Loader) grubbyStatus(ctx context.Context) (*Status, error) {
	es, err := l.grubbyEntries(ctx)
	if err != nil {
		return nil, err
	}
	out, err := l.run(ctx, "grubby", "--default-kernel")
	if err != nil {
		return nil, err
	}
	kernel := strings.TrimSpace(string(out))
	st := &Status{Kind: Grubby, Saved: true, DefaultRelease: strings.TrimPrefix(path.Base(kernel), "vmlinuz-")}
	for _, e := range es {
		if e.Release == st.DefaultRelease {
			st.Default = e.ID
			break
		}
	}
	env, err := l.grubenv("boot/grub2/grubenv")
	if err != nil {
		return nil, fmt.Errorf("read GRUB environment: %w", err)
	}
	st.Next = env["next_entry"]
	st.NextRelease = releaseOf(es, st.Next)
	return st, nil
}
