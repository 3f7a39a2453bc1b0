/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/api/sensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/fsutil.h"

/* The link type in a pcap file header (either byte order, µs or ns), 0 if unreadable. */
static uint32_t
sensors_linktype(const char *path)
{
	uint8_t h[24];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, h, sizeof(h));
	close(fd);
	if (n != (ssize_t)sizeof(h))
		return 0;
	uint32_t magic = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
	if (magic == 0xa1b2c3d4u || magic == 0xa1b23c4du)
		return ((uint32_t)h[20] | (uint32_t)h[21] << 8 | (uint32_t)h[22] << 16 |
			       (uint32_t)h[23] << 24) &
			0xffff;
	if (magic == 0xd4c3b2a1u || magic == 0x4d3cb2a1u)
		return ((uint32_t)h[23] | (uint32_t)h[22] << 8 | (uint32_t)h[21] << 16 |
			       (uint32_t)h[20] << 24) &
			0xffff;
	return 0;
}

/* "<ifindex>-<ifname>" of a segment file name, or false for anything else. */
static bool
sensors_iface(const char *name, long *index, char *ifname, size_t len)
{
	if (strncmp(name, ".open-", 6) == 0)
		name += 6;
	else if (name[0] == '.')
		return false;
	size_t n = strlen(name);
	const char *dot = strchr(name, '.');
	if (n < 6 || strcmp(name + n - 5, ".pcap") != 0 || !dot || dot >= name + n - 5)
		return false;
	char *end;
	errno = 0;
	*index = strtol(dot + 1, &end, 10);
	if (errno || end == dot + 1 || *end != '-' || *index < 0 || *index > 65535)
		return false;
	size_t il = (size_t)(name + n - 5 - (end + 1));
	if (il == 0 || il >= len)
		return false;
	memcpy(ifname, end + 1, il);
	ifname[il] = '\0';
	return true;
}

static int
sensors_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
sensors_if_cmp(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "index"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "index"));
	if (x != y)
		return x < y ? -1 : 1;
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
		json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

/* The interfaces of one sensor, sorted. */
static json_t *
sensors_ifaces(const char *dir, const char *id)
{
	char path[PATH_MAX];
	json_t *arr = json_array();
	if (!arr || fsu_path(path, sizeof(path), "%s/sensors/%s/segments", dir, id) != 0)
		return arr;
	DIR *d = opendir(path);
	if (!d)
		return arr;
	struct dirent *e;
	while ((e = readdir(d))) {
		long index;
		char ifname[256], file[PATH_MAX];
		bool known = false;
		if (!sensors_iface(e->d_name, &index, ifname, sizeof(ifname)))
			continue;
		size_t i;
		json_t *v;
		json_array_foreach(arr, i, v)
		{
			if (json_integer_value(json_object_get(v, "index")) == index &&
				strcmp(json_string_value(json_object_get(v, "name")), ifname) == 0)
				known = true;
		}
		if (known || fsu_path(file, sizeof(file), "%s/%s", path, e->d_name) != 0)
			continue;
		json_array_append_new(arr,
			json_pack("{s:I,s:s,s:I}", "index", (json_int_t)index, "name", ifname, "linktype",
				(json_int_t)sensors_linktype(file)));
	}
	closedir(d);
	size_t n = json_array_size(arr);
	json_t **v = n ? calloc(n, sizeof(*v)) : NULL;
	if (v) {
		for (size_t i = 0; i < n; i++)
			v[i] = json_incref(json_array_get(arr, i));
		qsort(v, n, sizeof(*v), sensors_if_cmp);
		json_array_clear(arr);
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, v[i]);
		free(v);
	}
	return arr;
}

json_t *
api_sensors_json(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	char **ids = NULL;
	size_t n = 0, cap = 0;
	json_t *list = json_array(), *res = NULL;
	if (!list || fsu_path(path, sizeof(path), "%s/sensors", dir) != 0) {
		snprintf(err, errlen, "out of memory");
		json_decref(list);
		return NULL;
	}
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!fsu_name_ok(e->d_name))
				continue;
			if (n == cap) {
				char **v = realloc(ids, (cap = cap ? cap * 2 : 16) * sizeof(*v));
				if (!v)
					break;
				ids = v;
			}
			if (!(ids[n] = strdup(e->d_name)))
				break;
			n++;
		}
		closedir(d);
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		json_decref(list);
		return NULL;
	}
	if (n > 1)
		qsort(ids, n, sizeof(*ids), sensors_cmp);
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(list,
			json_pack("{s:s,s:o}", "id", ids[i], "interfaces", sensors_ifaces(dir, ids[i])));
		free(ids[i]);
	}
	free(ids);
	res = json_pack("{s:o}", "sensors", list);
	if (!res)
		snprintf(err, errlen, "out of memory");
	return res;
}
