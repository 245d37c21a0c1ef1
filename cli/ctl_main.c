/* ctl_main.c - sluicectl: the Admin API from a shell (see ctl_cmd.h). */
#include <stdio.h>

#include "ctl_cmd.h"

int main(int argc, char **argv)
{
    return ctl_main(argc, argv, stdout, stderr, ctl_env_getenv, NULL);
}
