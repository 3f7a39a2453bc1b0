/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Dropping root: both programs open what needs privileges first (capture sockets,
 * low ports), then become an ordinary user for everything that touches traffic.
 */
#ifndef PCAPLINE_SHARED_PRIVDROP_H
#define PCAPLINE_SHARED_PRIVDROP_H

#include <stddef.h>

/* Gives `path` and everything below it to `user` (when running as root). Returns 0 or
 * -1 with err set. */
int priv_chown_tree(const char *path, const char *user, char *err, size_t errlen);

/* Switches to `user` (its groups included) for good: all capabilities go with root.
 * When the process already runs as `user` (not root), it keeps its identity and gives
 * up every capability instead (priv_drop_caps). Returns 0, or -1 with err set (unknown
 * user, or the switch did not stick). */
int priv_drop(const char *user, char *err, size_t errlen);

/* Gives up every capability (effective, permitted, inheritable, ambient) of a process
 * that is not root but was started with some (CAP_NET_RAW for capture), and sets
 * no_new_privs. Returns 0, or -1 with err set. */
int priv_drop_caps(char *err, size_t errlen);

#endif
