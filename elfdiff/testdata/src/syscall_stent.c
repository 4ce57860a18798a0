/* The same syscall as syscall_inline.c, fixed with stent/livepatch.h's
 * STENT_SYSCALL_DEFINE1: the entry points are the same, the body moves to
 * __stent_sys_newuname, an ordinary (traceable) function. The entry points
 * count as changed (they call the new body) and are replaced; the new body
 * is carried along. */
#include "kernel.h"

struct pt_regs { unsigned long di, si, dx, bx, cx; };
extern int sink(int);

#ifdef PATCHED
static noinline long __stent_sys_newuname(long name)
{
	return sink(name) + 2;
}

static long __se_sys_newuname(long name)
{
	return __stent_sys_newuname(name);
}
#else
static inline notrace noinline long __do_sys_newuname(long name)
{
	return sink(name) + 1;
}

static long __se_sys_newuname(long name)
{
	return __do_sys_newuname(name);
}
#endif

long __x64_sys_newuname(const struct pt_regs *regs)
{
	return __se_sys_newuname(regs->di);
}

long __ia32_sys_newuname(const struct pt_regs *regs)
{
	return __se_sys_newuname((unsigned int)regs->bx);
}
