import CProcess
import Journal

#if canImport(Glibc)
import Glibc
#endif

/// What the process settles about itself before it reads a configuration or opens a journal.
enum ProcessGuards {
    /// The exit status when the journal is damaged (sysexits' EX_DATAERR), for a run and for the
    /// `journal` commands alike: distinct from 1 (any other failure), 2 (`verify` could not verify) and
    /// 64 (usage), so a supervisor can stop restarting (the unit's `RestartPreventExitStatus=65`).
    static let journalDamaged: Int32 = 65

    /// No core dump — it would hold credentials, tokens and the events in flight — and no ptrace or
    /// /proc/PID/mem reads by other processes of the same user (`PR_SET_DUMPABLE` 0, and `RLIMIT_CORE`
    /// 0 where a core pattern would dump anyway); a SIGBUS in the journal's map ends the process with
    /// the journal's damage message and ``journalDamaged`` instead of a crash.
    ///
    /// The corresponding C functions are `prctl`, `setrlimit` and `sigaction`.
    static func apply() {
        _ = cloudtrailbeat_set_dumpable(0)
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none)
        Journal.exitOnMapFault(status: journalDamaged)
    }
}
