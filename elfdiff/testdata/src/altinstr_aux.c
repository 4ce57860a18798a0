/* static_cpu_has() as x86 builds it: a jmp into a code fragment in
 * .altinstr_aux that tests the feature bit and jumps back into the
 * function, one fragment per use, all in one section. The fix changes
 * fixed, which moves the targets of its own fragment's jumps; copy_has
 * (notrace, as GCC's out-of-line copy of an inline is, e.g.
 * pfn_swap_entry_to_page in fs/proc/task_mmu.o) is unchanged: its
 * fragment is the same, only the section it shares with fixed's differs.
 * It must not be reported, or the build would refuse it as notrace. */
#include "kernel.h"

extern unsigned char cpu_caps[];
extern int slow_path(int x);

static __always_inline int cpu_has(void)
{
	asm goto("jmp 6f\n"
		 ".pushsection .altinstr_aux,\"ax\"\n"
		 "6:\n"
		 " testb $1,%[cap]\n"
		 " jnz %l[t_yes]\n"
		 " jmp %l[t_no]\n"
		 ".popsection\n"
		 : : [cap] "m" (cpu_caps[0]) : : t_yes, t_no);
t_yes:
	return 1;
t_no:
	return 0;
}

notrace int copy_has(int x)
{
	if (cpu_has())
		return x + 1;
	return slow_path(x);
}

int fixed(int x)
{
#ifdef PATCHED
	if (x < 0)
		return -22;
#endif
	if (cpu_has())
		return x * 3;
	return slow_path(x);
}
