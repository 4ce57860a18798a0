/* A relocatable object with a .modinfo section shaped like a kernel
 * module's, for ModInfo tests. Compiled by the tests with gcc -c, and once
 * into the committed fake_modinfo.o (go generate ./kmod) for machines
 * without gcc. */
#ifndef LIVEPATCH
#define LIVEPATCH "livepatch=Y"
#endif
static const char modinfo[] __attribute__((section(".modinfo"), used, aligned(1))) =
	"license=GPL\0"
	LIVEPATCH "\0"
	"depends=\0"
	"name=stent_lp_test\0"
	"vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions ";
int stent_fake(void) { return 1; }
