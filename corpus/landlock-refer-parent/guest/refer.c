/* Under a Landlock domain that handles REFER, rename a file between two
 * directories both granted REFER: current_check_refer_path walks the
 * source's parent (the fix pins it). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char a[256], b[256], fa[300], fb[300];
	snprintf(a, sizeof a, "%s/a", argv[1]);
	snprintf(b, sizeof b, "%s/b", argv[1]);
	snprintf(fa, sizeof fa, "%s/f", a);
	snprintf(fb, sizeof fb, "%s/f", b);
	mkdir(a, 0700);
	mkdir(b, 0700);
	close(open(fa, O_CREAT | O_WRONLY, 0600));
	struct landlock_ruleset_attr attr = {
		.handled_access_fs = LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG,
	};
	int rs = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (rs < 0) { perror("landlock_create_ruleset"); return 1; }
	struct landlock_path_beneath_attr pb = { .allowed_access = attr.handled_access_fs };
	pb.parent_fd = open(argv[1], O_PATH);
	if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0) { perror("landlock_add_rule"); return 1; }
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_landlock_restrict_self, rs, 0) != 0) { perror("restrict_self"); return 1; }
	if (rename(fa, fb) != 0) { perror("rename a/f b/f"); return 1; }
	if (rename(fb, fa) != 0) { perror("rename b/f a/f"); return 1; }
	/* Outside the rule: refused. */
	if (rename(fa, "/f") == 0) { fprintf(stderr, "rename out of the ruleset allowed\n"); return 1; }
	return 0;
}
