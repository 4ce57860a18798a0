// SPDX-License-Identifier: GPL-2.0
/*
 * stent_blocker: a normal (not live patch) module for Stent's QEMU tests.
 *
 * It starts one kernel thread, "stent_blocker", that spends its whole life
 * inside stent_blocker_wait(), sleeping in short steps until the module is
 * unloaded. A live patch of stent_blocker_wait() (stent_lp_stall) can
 * therefore never finish its transition: the livepatch core finds the old
 * function on that thread's stack every time it tries to switch it over.
 *
 * /proc/stent_blocker reads "blocker original", printed by
 * stent_blocker_show(), which a live patch can also replace.
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

int stent_blocker_wait(void);
int stent_blocker_show(struct seq_file *m, void *v);

static struct task_struct *stent_blocker_task;

/* Not static and never inlined: live patches find it by name in kallsyms. */
noinline int stent_blocker_wait(void)
{
	while (!kthread_should_stop())
		msleep_interruptible(100);
	return 0;
}

noinline int stent_blocker_show(struct seq_file *m, void *v)
{
	seq_puts(m, "blocker original\n");
	return 0;
}

static int stent_blocker_thread(void *data)
{
	return stent_blocker_wait();
}

static int __init stent_blocker_init(void)
{
	if (!proc_create_single("stent_blocker", 0444, NULL, stent_blocker_show))
		return -ENOMEM;
	stent_blocker_task = kthread_run(stent_blocker_thread, NULL, "stent_blocker");
	if (IS_ERR(stent_blocker_task)) {
		remove_proc_entry("stent_blocker", NULL);
		return PTR_ERR(stent_blocker_task);
	}
	return 0;
}

static void __exit stent_blocker_exit(void)
{
	kthread_stop(stent_blocker_task);
	remove_proc_entry("stent_blocker", NULL);
}

module_init(stent_blocker_init);
module_exit(stent_blocker_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Stent test module: a kthread that never leaves stent_blocker_wait()");
