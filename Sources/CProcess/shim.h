#ifndef CLOUDTRAILBEAT_CPROCESS_SHIM_H
#define CLOUDTRAILBEAT_CPROCESS_SHIM_H
// Process-wide settings Swift cannot reach directly (prctl is variadic).

#if defined(__linux__)
#include <sys/prctl.h>
#endif

/// Sets whether the process may dump core and be attached to (ptrace, /proc/PID/mem) by processes of
/// its own user: 0 forbids both. Returns 0, or -1 with errno set. A no-op (0) where prctl does not exist.
static inline int cloudtrailbeat_set_dumpable(int dumpable) {
#if defined(__linux__)
    return prctl(PR_SET_DUMPABLE, (unsigned long)dumpable, 0UL, 0UL, 0UL);
#else
    (void)dumpable;
    return 0;
#endif
}

#endif
