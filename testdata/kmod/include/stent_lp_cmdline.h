/* SPDX-License-Identifier: GPL-2.0 */
/*
 * stent_lp_cmdline.h: the body of the stent_lp_cmdline_vN test live patches,
 * which differ only in STENT_TAG: each replaces cmdline_proc_show() (object
 * vmlinux) so that reading /proc/cmdline prints
 * "<STENT_TAG> patched: <original command line>", and sets .replace.
 *
 * saved_command_line is not exported to modules in Debian's 6.1 kernels, so
 * the module reads /proc/cmdline once when it loads, before its own patch is
 * enabled, and drops the "stent-vN patched: " prefix an earlier test patch
 * may have put in front of it.
 */
#ifndef STENT_TAG
#error "define STENT_TAG (\"stent-vN\") before including stent_lp_cmdline.h"
#endif

#include <linux/err.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/string.h>

static char stent_cmdline[4096];

static int stent_read_cmdline(void)
{
	struct file *f;
	loff_t pos = 0;
	ssize_t n;
	char *s;

	f = filp_open("/proc/cmdline", O_RDONLY, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	n = kernel_read(f, stent_cmdline, sizeof(stent_cmdline) - 1, &pos);
	filp_close(f, NULL);
	if (n < 0)
		return n;
	stent_cmdline[n] = '\0';
	if (n > 0 && stent_cmdline[n - 1] == '\n')
		stent_cmdline[n - 1] = '\0';

	if (strncmp(stent_cmdline, "stent-v", 7) == 0) {
		s = strstr(stent_cmdline, " patched: ");
		if (s) {
			s += strlen(" patched: ");
			memmove(stent_cmdline, s, strlen(s) + 1);
		}
	}
	return 0;
}

static int stent_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s patched: %s\n", STENT_TAG, stent_cmdline);
	return 0;
}

static struct klp_func stent_funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = stent_cmdline_proc_show,
	},
	{ }
};

static struct klp_object stent_objs[] = {
	{
		/* .name == NULL: the function lives in vmlinux */
		.funcs = stent_funcs,
	},
	{ }
};

static struct klp_patch stent_patch = {
	.mod = THIS_MODULE,
	.objs = stent_objs,
	.replace = true,
};

static int __init stent_lp_init(void)
{
	int ret;

	ret = stent_read_cmdline();
	if (ret) {
		pr_err("%s: read /proc/cmdline: %d\n", KBUILD_MODNAME, ret);
		return ret;
	}
	return klp_enable_patch(&stent_patch);
}

static void __exit stent_lp_exit(void)
{
}

module_init(stent_lp_init);
module_exit(stent_lp_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Stent test live patch: /proc/cmdline says " STENT_TAG);
MODULE_INFO(livepatch, "Y");
