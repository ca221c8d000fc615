// SPDX-License-Identifier: MIT
/*
 * Failpoints exist only in test builds (-DMINIVMM_FAILPOINTS: build/minivmm-test
 * and the ASan+UBSan build/minivmm-san). In ./minivmm, what users run, they
 * are constant false: no environment variable can make it hang or die.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/failpoint.h"
#include "vmm/log.h"

#ifdef MINIVMM_FAILPOINTS
bool failpoint(const char *name)
{
	const char *list = getenv("MINIVMM_FAILPOINTS"), *p;
	size_t len = strlen(name);

	for (p = list; p && (p = strstr(p, name)); p += len)
		if ((p == list || p[-1] == ',') && (p[len] == 0 || p[len] == ','))
			return true;
	return false;
}

void failpoint_kill(const char *name)
{
	if (!failpoint(name))
		return;
	pr_info("failpoint %s: killing myself", name);
	raise(SIGKILL);
}
#else
bool failpoint(const char *name)
{
	(void)name;
	return false;
}

void failpoint_kill(const char *name)
{
	(void)name;
}
#endif
