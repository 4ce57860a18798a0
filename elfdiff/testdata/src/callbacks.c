/* A fix that keeps new per-object state in a shadow variable and registers
 * callbacks, as stent/livepatch.h's STENT_SHADOW, STENT_PRE_PATCH and
 * STENT_POST_UNPATCH expand: the callbacks are functions the fix adds,
 * each pointed at from section .stent.<kind>. */
#include "kernel.h"

struct klp_object;
extern void *klp_shadow_get_or_alloc(void *obj, unsigned long id, unsigned long size, unsigned gfp, void *ctor, void *ctor_data);
extern void klp_shadow_free_all(unsigned long id, void *dtor);
extern int sink(int);

#define __used __attribute__((used))
#define STENT_CALLBACK(kind, ret, fn) \
	static ret (*const __stent_##kind##_##fn)(struct klp_object *) __used __section(".stent." #kind) = fn

struct task { int pid; };

int show(struct task *t)
{
#ifdef PATCHED
	int *reads = klp_shadow_get_or_alloc(t, 0x57e47001, sizeof(int), 0, 0, 0);

	if (reads)
		return sink(t->pid + ++*reads);
#endif
	return sink(t->pid);
}

#ifdef PATCHED
static int stent_pre(struct klp_object *obj)
{
	printk("stent: pre-patch\n");
	return 0;
}
STENT_CALLBACK(pre_patch, int, stent_pre);

static void stent_post_unpatch(struct klp_object *obj)
{
	klp_shadow_free_all(0x57e47001, 0);
	printk("stent: post-unpatch\n");
}
STENT_CALLBACK(post_unpatch, void, stent_post_unpatch);
#endif
