# The fix's case: an optimized kprobe A (vfs_statx+5, its 5-byte jump
# covers the next instructions), a disabled kprobe C inside A's jump
# (+7: prepared for optimization, never armed), and a kprobe B armed
# inside both (+9). Arming B looks for an optimized probe over it
# (get_optimized_kprobe): unpatched the search stops at C, disarmed, and
# B's int3 is written into A's live jump, which crashes the next caller
# (seen on 6.1.0-54-amd64 unpatched: stat jumps from vfs_statx to
# 0xffffffff4e21b000 and the kernel panics); with the fix C is skipped, A
# is unoptimized first, and vfs_statx runs with B armed. (So this check
# is not run unpatched: no fails_unpatched.) The probes are
# removed by the teardown, not here: removing a kprobe event resets the
# trace buffer, and with it the proof that the check reached the patched
# function.
T=/sys/kernel/tracing
D=/sys/kernel/debug
[ -e $D/kprobes ] || mount -t debugfs none $D
[ -e $T/events/stentk/a ] || echo 'p:stentk/a vfs_statx+5' >> $T/kprobe_events
echo 1 > $T/events/stentk/a/enable
# The optimizer runs a few jiffies after the probe is armed.
i=0
until grep -q 'vfs_statx+0x5 .*OPTIMIZED' $D/kprobes/list; do i=$((i+1)); [ $i -lt 50 ]; sleep 0.1; done
[ -e $T/events/stentk/c ] || echo 'p:stentk/c vfs_statx+7' >> $T/kprobe_events
[ -e $T/events/stentk/b ] || echo 'p:stentk/b vfs_statx+9' >> $T/kprobe_events
echo 1 > $T/events/stentk/b/enable
stat / >/dev/null
grep 'vfs_statx+' $D/kprobes/list
grep -q ' b: (vfs_statx+0x9' $T/trace
echo 0 > $T/events/stentk/b/enable
echo 0 > $T/events/stentk/a/enable
