/* The fix changes a member of a COMDAT group. */
#include "kernel.h"

asm(".section .text.shared,\"axG\",@progbits,shared,comdat\n"
    ".globl shared\n"
    ".type shared, @function\n"
    "shared:\n"
#ifdef PATCHED
    "\tmovl $2, %eax\n"
#else
    "\tmovl $1, %eax\n"
#endif
    "\tret\n"
    ".size shared, .-shared\n"
    ".text\n");

int caller(void)
{
	return 0;
}
