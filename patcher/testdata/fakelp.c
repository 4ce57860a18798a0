/* A relocatable object with a kernel-module-like .modinfo, for patcher
 * unit tests. NAME, RELEASE and LP are set by the test with -D. */
#define STR2(x) #x
#define STR(x) STR2(x)
static const char modinfo[] __attribute__((section(".modinfo"), used, aligned(1))) =
	"license=GPL\0"
	LP "\0"
	"name=" STR(NAME) "\0"
	"vermagic=" RELEASE " SMP preempt mod_unload modversions ";
int fake_fn(void) { return 1; }
