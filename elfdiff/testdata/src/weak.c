/* A fix to a __weak definition: patched when the kernel runs it, ignored
 * when another file's strong definition overrides it. sibling() tells where
 * this file's code sits in the kernel's symbol table. */
#include "kernel.h"

extern int sink(int);

int sibling(int x)
{
	return sink(x) + 3;
}

__attribute__((weak)) int arch_hook(int x)
{
#ifdef PATCHED
	return sink(x + 2);
#else
	return sink(x + 1);
#endif
}
