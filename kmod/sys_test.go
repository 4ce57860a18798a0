package kmod

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExplainLoadErr(t *testing.T) {
	const said = "livepatch: failed to register ftrace handler for function 'cmdline_proc_show' (-16)"
	klog := []string{"livepatch: enabling patch 'stent_cmdline'", said, "livepatch: failed to patch object 'vmlinux'"}
	tests := []struct {
		name     string
		err      error
		klog     []string
		ftraceOn string
		ftrace   bool     // wraps ErrFtrace
		callback bool     // wraps ErrCallback
		want     []string // in the message
		not      []string
	}{
		{name: "ftrace disabled", err: unix.EBUSY, klog: klog, ftraceOn: "0", ftrace: true,
			want: []string{"kernel.ftrace_enabled is 0", "sysctl kernel.ftrace_enabled=1", `kernel: "` + said + `"`}, not: []string{"transition"}},
		{name: "another ftrace user", err: unix.EBUSY, klog: klog, ftraceOn: "1", ftrace: true,
			want: []string{"another ftrace user", "kprobe", said}, not: []string{"transition", "ftrace_enabled"}},
		{name: "ftrace disabled, no log", err: unix.EBUSY, ftraceOn: "0", ftrace: true,
			want: []string{"kernel.ftrace_enabled is 0"}, not: []string{"kernel: "}},
		{name: "no ftrace line", err: unix.EBUSY, klog: []string{"livepatch: enabling patch 'x'"}, ftraceOn: "1",
			want: []string{"ftrace refused", "transition started outside stent"}},
		{name: "other errno", err: unix.EEXIST, klog: klog, ftraceOn: "0", want: []string{"already loaded"}, not: []string{"ftrace"}},
		// The callback's own errno, EBUSY included, is the callback's.
		{name: "pre-patch callback", err: unix.EBUSY, ftraceOn: "1", callback: true,
			klog: []string{"livepatch: enabling patch 'stent_cb'", "livepatch: pre-patch callback failed for object 'vmlinux'", "livepatch: failed to enable patch 'stent_cb'"},
			want: []string{"pre-patch callback refused", "nothing was changed", "failed for object 'vmlinux'"}, not: []string{"ftrace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := explainLoadErr(tt.err, tt.klog, tt.ftraceOn)
			if !errors.Is(err, tt.err) {
				t.Errorf("explainLoadErr(%v) = %v, does not wrap the errno", tt.err, err)
			}
			if got := errors.Is(err, ErrFtrace); got != tt.ftrace {
				t.Errorf("explainLoadErr(%v) = %v; wraps ErrFtrace %v, want %v", tt.err, err, got, tt.ftrace)
			}
			if got := errors.Is(err, ErrCallback); got != tt.callback {
				t.Errorf("explainLoadErr(%v) = %v; wraps ErrCallback %v, want %v", tt.err, err, got, tt.callback)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("explainLoadErr(%v) = %q, want %q in it", tt.err, err, w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("explainLoadErr(%v) = %q, want no %q", tt.err, err, w)
				}
			}
		})
	}
}
