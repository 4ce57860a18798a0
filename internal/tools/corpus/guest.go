package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stent-dev/stent/internal/vmtest"
)

// guestSession runs the fixes of one kernel in one guest.
type guestSession struct {
	ctx  context.Context
	vm   *vmtest.VM
	log  io.Writer
	down bool // the guest died; the caller reboots it
}

// errStep stops a fix's run at the step that failed.
type errStep struct{ msg string }

func (e *errStep) Error() string { return e.msg }

// sh runs a guest script; a failure (exit status, guest down) ends the
// fix's run with the step's name and the script's output.
func (g *guestSession) sh(o *outcome, step, script string) string {
	o.Steps = append(o.Steps, step)
	ctx, cancel := context.WithTimeout(g.ctx, 3*time.Minute)
	defer cancel()
	res, err := g.vm.Exec(ctx, vmtest.Cmd{Argv: []string{"/bin/sh", "-ec", script}, Env: []string{"FIX=/root/" + o.Fix.Name}})
	if err != nil {
		if errors.Is(err, vmtest.ErrDown) {
			g.down = true
			o.Oops = true
		}
		panic(&errStep{fmt.Sprintf("%s: %v (stdout %q, stderr %q)", step, err, tail(res.Stdout), tail(res.Stderr))})
	}
	return res.Stdout
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = "..." + s[len(s)-300:]
	}
	return s
}

// The function tracer, filtered on the patch module, shows which of its
// functions ran: the proof that the check reached the patched code and not
// the original.
const traceOn = `T=/sys/kernel/tracing
[ -e $T/trace ] || mount -t tracefs nodev $T
echo 0 > $T/tracing_on
echo nop > $T/current_tracer
echo ':mod:%s' > $T/set_ftrace_filter
echo > $T/trace
echo function > $T/current_tracer
echo 1 > $T/tracing_on
`

const traceOff = `T=/sys/kernel/tracing
echo 0 > $T/tracing_on
grep -v '^#' $T/trace | sed -n 's/.*: \([A-Za-z0-9_.]*\) <-.*/\1/p' | sort -u
echo nop > $T/current_tracer
echo > $T/set_ftrace_filter
echo > $T/trace
`

var reOops = regexp.MustCompile(`(?m)^.*(BUG:|Oops|WARNING:|general protection fault|Call Trace:|livepatch: .*(failed|error)).*$`)

// exercise runs one built fix: apply, check (traced), revert; for a module
// fix, also with the module loaded after the patch. Then the kernel log
// must be free of oopses and warnings.
func (g *guestSession) exercise(o *outcome) {
	f := o.Fix
	defer func() {
		if v := recover(); v != nil {
			e, ok := v.(*errStep)
			if !ok {
				panic(v)
			}
			o.Loaded = false
			if o.Err == "" {
				o.Err = e.msg
			}
			if !g.down {
				if res, err := g.vm.Sh(g.ctx, "dmesg | tail -6"); err == nil {
					o.Err += "; kernel log: " + strings.Join(strings.Fields(res.Stdout), " ")
				}
				// Leave nothing behind for the next fix.
				g.vm.Sh(g.ctx, "stent revert "+f.moduleName()+" >/dev/null 2>&1; echo 0 > /sys/kernel/tracing/tracing_on 2>/dev/null; true")
				g.logCheck(o)
			}
		}
	}()
	start := time.Now()
	g.sh(o, "clear log", "dmesg -c >/dev/null")
	bundle := "/root/" + f.Name + ".bundle"
	mods := strings.Join(f.Modules, " ")
	if mods != "" {
		g.sh(o, "load modules", "for m in "+mods+"; do modprobe $m; done")
	}
	if f.Setup != "" {
		g.sh(o, "setup", f.Setup)
	}
	if f.FailsUnpatched {
		g.checkUnpatched(o)
	}
	g.sh(o, "apply", "stent apply "+bundle)
	g.check(o, "check")
	g.sh(o, "revert", "stent revert "+f.moduleName())
	if mods != "" {
		if f.Teardown != "" {
			g.sh(o, "teardown", f.Teardown)
		}
		g.sh(o, "unload modules", "for m in "+reverse(f.Modules)+"; do rmmod $m; done; if grep -E '^("+strings.Join(modNames(f.Modules), "|")+") ' /proc/modules; then exit 1; fi")
		g.sh(o, "apply (modules not loaded)", "stent apply "+bundle)
		g.sh(o, "load modules after the patch", "for m in "+mods+"; do modprobe $m; done")
		// Every listed module the patch has an object for (a directory
		// beside vmlinux's) must be patched now that it is loaded again.
		listed := modNames(f.Modules)
		n := 0
		for _, obj := range strings.Fields(g.sh(o, "patched modules", "cd /sys/kernel/livepatch/"+f.moduleName()+" && for d in */; do echo ${d%/}=$(cat $d/patched); done")) {
			name, got, _ := strings.Cut(obj, "=")
			if !slices.Contains(listed, name) {
				continue
			}
			n++
			if got != "1" {
				panic(&errStep{fmt.Sprintf("%s loaded after the patch: patched = %q, want 1", name, got)})
			}
		}
		if n == 0 {
			panic(&errStep{fmt.Sprintf("the patch has no object for any of the modules %s", strings.Join(f.Modules, ", "))})
		}
		if f.Setup != "" {
			g.sh(o, "setup (loaded after)", f.Setup)
		}
		g.check(o, "check (loaded after)")
		if f.Teardown != "" {
			g.sh(o, "teardown (loaded after)", f.Teardown)
		}
		g.sh(o, "revert (loaded after)", "stent revert "+f.moduleName())
	} else if f.Teardown != "" {
		g.sh(o, "teardown", f.Teardown)
	}
	o.Loaded = true
	g.logCheck(o)
	fmt.Fprintf(g.log, "corpus: %s exercised in %v\n", f.Name, time.Since(start).Round(time.Millisecond))
}

// check runs the fix's check with the function tracer on the patch module
// and requires the traced functions to have run.
func (g *guestSession) check(o *outcome, step string) {
	g.checkIn(o, o.Fix, o.Fix.moduleName(), step)
}

// checkUnpatched runs the fix's check before its patch is applied: it
// must fail there, else it does not test the fix.
func (g *guestSession) checkUnpatched(o *outcome) {
	o.Steps = append(o.Steps, "check (unpatched)")
	ctx, cancel := context.WithTimeout(g.ctx, 3*time.Minute)
	defer cancel()
	res, err := g.vm.Exec(ctx, vmtest.Cmd{Argv: []string{"/bin/sh", "-ec", o.Fix.Check}, Env: []string{"FIX=/root/" + o.Fix.Name}})
	var ee *vmtest.ExitError
	switch {
	case err == nil:
		panic(&errStep{fmt.Sprintf("check (unpatched): passed before the patch was applied (fails_unpatched): it does not test the fix (stdout %q)", tail(res.Stdout))})
	case errors.As(err, &ee):
		o.Unpatched = true
		fmt.Fprintf(g.log, "corpus: %s: check fails unpatched, as it should: exit status %d: %s\n", o.Fix.Name, ee.Exit, oneLine(tail(res.Stderr+" "+res.Stdout)))
	default:
		if errors.Is(err, vmtest.ErrDown) {
			g.down, o.Oops = true, true
		}
		panic(&errStep{fmt.Sprintf("check (unpatched): %v", err)})
	}
}

// logCheck marks the fix as oopsing when the kernel log has an oops or a
// warning.
func (g *guestSession) logCheck(o *outcome) {
	res, err := g.vm.Sh(g.ctx, "dmesg")
	if err != nil {
		if errors.Is(err, vmtest.ErrDown) {
			g.down, o.Oops = true, true
		}
		return
	}
	if m := reOops.FindAllString(res.Stdout, 5); len(m) > 0 {
		o.Oops = true
		if o.Err == "" {
			o.Err = "kernel log: " + strings.Join(m, " | ")
		}
	}
}

func modNames(mods []string) []string {
	var out []string
	for _, m := range mods {
		out = append(out, strings.ReplaceAll(m, "-", "_"))
	}
	return out
}

func reverse(s []string) string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return strings.Join(r, " ")
}

// checkIn runs fix f's check with the function tracer on module (f's own
// patch, or a cumulative patch carrying f among others) and requires f's
// traced functions (default: one of its functions) to have run in it.
func (g *guestSession) checkIn(o *outcome, f *Fix, module, step string) {
	g.sh(o, step+": trace on", fmt.Sprintf(traceOn, module))
	out := g.sh(o, step, "FIX=/root/"+f.Name+"\n"+f.Check)
	ran := strings.Fields(g.sh(o, step+": trace off", traceOff))
	want := f.Traced
	if len(want) == 0 {
		for _, fn := range f.Functions {
			if slices.Contains(ran, fn) {
				return
			}
		}
		panic(&errStep{fmt.Sprintf("%s: none of the patched functions %v ran (traced: %v; the check printed %q)", step, f.Functions, ran, tail(out))})
	}
	for _, fn := range want {
		if !slices.Contains(ran, fn) {
			panic(&errStep{fmt.Sprintf("%s: patched function %s did not run (traced: %v; the check printed %q)", step, fn, ran, tail(out))})
		}
	}
}
