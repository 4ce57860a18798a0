/* A syscall as x86-64 6.1's SYSCALL_DEFINE1(newuname, ...) expands it: the
 * body is __do_sys_newuname, "static inline" and so notrace, which the
 * compiler keeps out of line (noinline here); the entry points
 * __x64_sys_newuname and __ia32_sys_newuname call it through the inlined
 * __se_sys_newuname. The fix changes the body as written, with
 * SYSCALL_DEFINE1: refused, and the refusal says to use Stent's macro. */
#include "kernel.h"

struct pt_regs { unsigned long di, si, dx, bx, cx; };
extern int sink(int);

static inline notrace noinline long __do_sys_newuname(long name)
{
#ifdef PATCHED
	return sink(name) + 2;
#else
	return sink(name) + 1;
#endif
}

static long __se_sys_newuname(long name)
{
	return __do_sys_newuname(name);
}

long __x64_sys_newuname(const struct pt_regs *regs)
{
	return __se_sys_newuname(regs->di);
}

long __ia32_sys_newuname(const struct pt_regs *regs)
{
	return __se_sys_newuname((unsigned int)regs->bx);
}
