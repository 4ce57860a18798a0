/* Just enough of the kernel's x86-64 conventions for elfdiff's test
 * objects: the same special-section entry layouts as Linux 6.1 emits them
 * (relative pointers), without the kernel's headers. */
#define __section(s)	__attribute__((section(s)))
#define noinline	__attribute__((noinline))
#define notrace		__attribute__((no_instrument_function))
#define __init		__section(".init.text") noinline
#define __always_inline	inline __attribute__((always_inline))

extern int printk(const char *fmt, ...);
extern void __might_sleep(const char *file, int line);
#define might_sleep()	__might_sleep(__FILE__, __LINE__)

/* WARN_ON: ud2 plus a 12-byte struct bug_entry (addr, file, line, flags). */
#define WARN_ON(cond) ({						\
	int __c = !!(cond);						\
	if (__c)							\
		asm volatile("1:\tud2\n"				\
			".pushsection __bug_table,\"aw\"\n"		\
			"2:\t.long 1b - .\n"				\
			"\t.long %c0 - .\n"				\
			"\t.word %c1\n"					\
			"\t.word %c2\n"					\
			"\t.org 2b + 12\n"				\
			".popsection"					\
			: : "i" (__FILE__), "i" (__LINE__), "i" (1 << 0));	\
	__c; })

/* A load with an exception table entry (insn, fixup, data). */
static __always_inline int load_nofault(const int *p)
{
	int v = -14;
	asm volatile("1:\tmovl (%1), %0\n2:\n"
		".pushsection __ex_table,\"a\"\n"
		"\t.balign 4\n"
		"\t.long 1b - .\n"
		"\t.long 2b - .\n"
		"\t.long 0\n"
		".popsection" : "+r" (v) : "r" (p));
	return v;
}

/* A static branch with a 16-byte struct jump_entry (code, target, key). */
struct static_key { int enabled; void *entries; };
static __always_inline int static_branch(struct static_key *key)
{
	asm goto("1:\t.byte 0x0f,0x1f,0x44,0x00,0x00\n"
		".pushsection __jump_table, \"aw\"\n"
		"\t.balign 8\n"
		"\t.long 1b - .\n"
		"\t.long %l[l_yes] - .\n"
		"\t.quad %c0 - .\n"
		".popsection" : : "i" (key) : : l_yes);
	return 0;
l_yes:
	return 1;
}

/* __UNIQUE_ID numbers with __COUNTER__: a fix that adds a user above
 * (pr_debug, min(), ...) renumbers every one below. */
#define ___PASTE(a, b)		a##b
#define __PASTE(a, b)		___PASTE(a, b)
#define __UNIQUE_ID(prefix)	__PASTE(__PASTE(__UNIQUE_ID_, prefix), __COUNTER__)

/* pr_debug with CONFIG_DYNAMIC_DEBUG and jump labels: a struct _ddebug in
 * __dyndbg holding __LINE__ in an 18-bit field, and a static branch on
 * the key inside it. */
struct _ddebug {
	const char *modname, *function, *filename, *format;
	unsigned int lineno:18;
	unsigned int class_id:6;
	unsigned int flags:8;
	struct static_key key;
} __attribute__((aligned(8)));
extern void __dynamic_pr_debug(struct _ddebug *descriptor, const char *fmt, ...);
#define __pr_debug(id, fmt, ...) do {					\
	static struct _ddebug __attribute__((aligned(8)))		\
	__section("__dyndbg") id = {					\
		.modname = "test", .function = __func__,		\
		.filename = __FILE__, .format = (fmt),			\
		.lineno = __LINE__, .class_id = 63, .flags = 0,		\
	};								\
	if (static_branch(&id.key))					\
		__dynamic_pr_debug(&id, fmt, ##__VA_ARGS__);		\
} while (0)
#define pr_debug(fmt, ...)	__pr_debug(__UNIQUE_ID(ddebug), fmt, ##__VA_ARGS__)
