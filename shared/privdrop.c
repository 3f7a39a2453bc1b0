/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/privdrop.h"

#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

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
priv_drop(const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "user '%s' does not exist", user);
		return -1;
	}
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
