/* Tail calls to a neighbouring function, as deferred_cad's to
 * kernel_restart in kernel/reboot.c: built without -ffunction-sections
 * (as distributions build), gas makes the jmp 2 bytes and leaves no
 * relocation; with the builder's -ffunction-sections it is 5 bytes with
 * one. jumps.o is the builder's compilation, jumps.shipped.o the
 * distribution's (a module's .ko is such an object), jumps.vmlinux that
 * one linked at the kernel's address (vmlinux). */
extern int sink(int);
int counted;

__attribute__((noinline)) void restart(int *p)
{
	if (p)
		*p = 0;
	sink(1);
}

void deferred(int *d)
{
	restart(0);
}

int settle(int n)
{
	if (n > 10)
		return sink(n);
	counted += n;
	if (counted > 100) {
		restart(&counted);
		return 1;
	}
	return 0;
}
