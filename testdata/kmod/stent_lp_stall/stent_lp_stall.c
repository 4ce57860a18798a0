// SPDX-License-Identifier: GPL-2.0
/*
 * stent_lp_stall: a test live patch whose transition never finishes.
 *
 * It patches two functions of the module stent_blocker:
 *   - stent_blocker_wait(), in which stent_blocker's kthread sleeps for as
 *     long as the module is loaded, so that thread can never be switched to
 *     the new code and /sys/kernel/livepatch/stent_lp_stall/transition stays
 *     1 until the patch is disabled (which reverses the transition) or
 *     stent_blocker is unloaded;
 *   - stent_blocker_show(), so /proc/stent_blocker reads "blocker patched"
 *     for tasks that have already switched.
 *
 * Unlike the cmdline patches it does not set .replace: it stacks on top of
 * whatever else is applied and leaves it alone.
 */
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int stent_lp_stall_wait(void)
{
	while (!kthread_should_stop())
		msleep_interruptible(100);
	return 0;
}

static int stent_lp_stall_show(struct seq_file *m, void *v)
{
	seq_puts(m, "blocker patched\n");
	return 0;
}

static struct klp_func stent_funcs[] = {
	{
		.old_name = "stent_blocker_wait",
		.new_func = stent_lp_stall_wait,
	},
	{
		.old_name = "stent_blocker_show",
		.new_func = stent_lp_stall_show,
	},
	{ }
};

static struct klp_object stent_objs[] = {
	{
		.name = "stent_blocker",
		.funcs = stent_funcs,
	},
	{ }
};

static struct klp_patch stent_patch = {
	.mod = THIS_MODULE,
	.objs = stent_objs,
};

static int __init stent_lp_stall_init(void)
{
	return klp_enable_patch(&stent_patch);
}

static void __exit stent_lp_stall_exit(void)
{
}

module_init(stent_lp_stall_init);
module_exit(stent_lp_stall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Stent test live patch of stent_blocker whose transition stalls");
MODULE_INFO(livepatch, "Y");
