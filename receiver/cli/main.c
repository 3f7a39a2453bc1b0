/* SPDX-License-Identifier: BSD-2-Clause */
/* pcapline: the repository client; the commands are dispatched by cli.c. */
#include "receiver/cli/cli.h"

int
main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
