// Package vmtest boots Debian kernels under QEMU for Stent's tests and lets
// them run commands in the guest.
//
// A test fetches a kernel (Kernel, via kpkg.Fetch), builds the test modules
// it needs from testdata/kmod (Module, BuildModule), boots (Boot, or Start
// outside tests) and talks to the guest with Run, Sh, Exec, WriteFile and
// ReadFile. Reboot powers the guest off cleanly and boots it again with the
// same initramfs files and disk; Close always stops QEMU.
//
//	k := vmtest.Kernel(t, vmtest.DefaultABI)
//	ko := vmtest.Module(t, k, "stent_lp_cmdline_v1")
//	vm := vmtest.Boot(ctx, t, vmtest.Options{Kernel: k, Files: []vmtest.File{vmtest.HostFile("/root/v1.ko", ko)}})
//	res, err := vm.Run(ctx, "stent", "apply", "/root/v1.ko")
//
// The guest:
//   - QEMU with TCG only (-accel tcg -cpu max; a guest with KVM hangs on
//     these machines), -smp 1, 512 MB, no network, no reboot (a panic or a
//     reboot ends QEMU, and requests then fail with ErrDown and the console's
//     last lines). The kernel's IO-APIC timer check is skipped
//     (no_timer_check): a guest starved by a busy host fails it and panics.
//   - The kernel is the image's vmlinux, decompressed once from the xz
//     bzImage into $STENT_CACHE/vmtest/<abi>/ and started through its PVH
//     entry point: this saves about 2 s of emulated decompression per boot.
//   - The initramfs, an uncompressed newc archive written here, holds the
//     host's busybox-static with its applet links, /init, the runner
//     (internal/tools/guestrun) and stent, both built once per test process
//     with CGO_ENABLED=0, the image modules below with a modules.dep for
//     busybox modprobe, /boot/config-<release>, and the test's Files
//     (appended as a second archive).
//   - Modules loaded at boot (all =m in Debian's 6.1 config): virtio_ring,
//     virtio_pci_modern_dev, virtio_pci_legacy_dev, virtio, virtio_pci,
//     virtio_console; with a disk also virtio_blk, crc32c_generic, jbd2,
//     mbcache, crc16, ext4. 8250, devtmpfs, tmpfs and livepatch are built in.
//   - Control channel: a virtio-serial port (name "vmtest.ctl") on a unix
//     socket, one JSON object per line (package wire). A second 8250 port
//     (ttyS1) was tried first: it moved ~55 KB/s towards the guest (1 MiB in
//     24 s) and has no flow control, so a busy guest drops bytes; the
//     virtio port writes 1 MiB in ~0.2 s and reads it in ~0.06 s. The kernel
//     console (ttyS0) goes to console.log in Options.LogDir.
//   - Options.Disk (NewDisk: raw, ext4, made on the host) is /dev/vda,
//     mounted at /var/lib/stent.
//
// Measured on the 2-core development machine (TCG, 6.1.0-56-amd64):
// boot to the runner's greeting 2.2-3.5 s (BenchmarkBoot: 2.2 s for boot,
// uname -r and Close), ~6 s for the first boot of a test process (it builds
// stent and guestrun); a command round trip 50-100 ms; Reboot with a disk
// ~3 s; insmod of a live patch plus its transition ~50 ms.
//
// Kernel facts these tests pin down (6.1.0-56-amd64):
//   - A module built against 6.1.0-55-amd64 loads into 6.1.0-56-amd64: with
//     CONFIG_MODVERSIONS the kernel skips the release in vermagic and checks
//     symbol CRCs, which match between these ABIs. Stent must compare the
//     module's vermagic release with uname -r itself.
//   - Unsigned modules load and taint the kernel ("module verification
//     failed"); livepatch modules also taint with TAINT_LIVEPATCH.
//   - With .replace, v2's completed transition removes v1's
//     /sys/kernel/livepatch entry; v1's module stays loaded until rmmod.
//   - stent_lp_stall's transition stays 1 while stent_blocker's kthread
//     sleeps in stent_blocker_wait (its /proc/<pid>/stack shows it); new
//     processes already see the patched /proc/stent_blocker ("blocker
//     patched"). Writing 0 to enabled reverses the transition; the entry
//     then disappears and both modules can be removed.
//   - saved_command_line is not exported, so the cmdline patches read
//     /proc/cmdline when they load (see testdata/kmod).
//   - "tsc: Unable to calibrate against PIT" shows up at some boots under
//     TCG; harmless.
package vmtest
