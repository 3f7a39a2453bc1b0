/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/privdrop.h"

#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

static uid_t chown_uid;
static gid_t chown_gid;

static int
priv_chown_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return lchown(path, chown_uid, chown_gid) == 0 ? 0 : -1;
}

int
priv_chown_tree(const char *path, const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "user '%s' does not exist", user);
		return -1;
	}
	if (geteuid() != 0)
		return 0;
	chown_uid = pw->pw_uid;
	chown_gid = pw->pw_gid;
	if (nftw(path, priv_chown_one, 32, FTW_PHYS) != 0) {
		snprintf(err, errlen, "cannot give %s to user '%s': %s", path, user, strerror(errno));
		return -1;
	}
	return 0;
}

int
priv_drop_caps(char *err, size_t errlen)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	/* Nothing held (a service without capabilities): no call that a seccomp filter
	 * denying capset (systemd's ~@privileged) would refuse. */
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) == 0 && !d[0].effective && !d[0].permitted && !d[0].inheritable &&
		!d[1].effective && !d[1].permitted && !d[1].inheritable) {
		/* The ambient set is a subset of the permitted one: empty too. */
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		return 0;
	}
	/* Lowering one's own sets needs no privilege; the ambient set goes first, since
	 * it may only hold what stays permitted and inheritable. */
	h.version = _LINUX_CAPABILITY_VERSION_3;
	h.pid = 0;
	memset(d, 0, sizeof(d));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
		snprintf(err, errlen, "cannot clear the ambient capabilities: %s", strerror(errno));
		return -1;
	}
	if (syscall(SYS_capset, &h, d) != 0) {
		snprintf(err, errlen, "cannot give up capabilities: %s", strerror(errno));
		return -1;
	}
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return 0;
}

int
priv_drop(const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "user '%s' does not exist", user);
		return -1;
	}
	/* Started as that user already (systemd's User= with AmbientCapabilities=, a
	 * container's runAsUser): switching needs CAP_SETUID/SETGID we do not have and
	 * should not get; what is left to drop are the capabilities granted for start-up. */
	if (pw->pw_uid != 0 && getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
		return priv_drop_caps(err, errlen);
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		snprintf(err, errlen, "cannot become user '%s': %s", user, strerror(errno));
		return -1;
	}
	/* No way back: a process that could regain root did not really drop it. */
	if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errlen, "dropping to user '%s' did not stick", user);
		return -1;
	}
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return 0;
}
