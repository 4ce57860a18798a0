/* Only a string literal changes. */
#include "kernel.h"

void report(int x)
{
#ifdef PATCHED
	printk("value is %d (checked)\n", x);
#else
	printk("value is %d\n", x);
#endif
}

void other_report(int x)
{
	printk("other %d\n", x);
}
