import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The process keeps its memory to itself: no core dump (`RLIMIT_CORE` 0) and not dumpable
/// (`PR_SET_DUMPABLE` 0: its /proc files belong to root, so another process of its user cannot ptrace
/// it or read /proc/PID/mem or /proc/PID/environ). Run as nobody when the tests run as root, as the
/// service user would be.
@Suite("Process guards")
struct ProcessGuardTests {
    @Test func noCoreDumpAndNotDumpable() throws {
        let dir = TempDir("guards")
        #expect(chmod(dir.path, 0o777) == 0)
        try writeLog(dir.sub("logs/AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/26/111111111111_CloudTrail_us-east-1_20261126T0000Z_g.json.gz"), tag: "g", count: 3)
        let config = dir.sub("c.yml")
        // An output that never answers keeps the run alive while it is looked at.
        try "journal:\n  path: \(dir.sub("journal"))\noutput:\n  elasticsearch:\n    hosts: [\"http://127.0.0.1:\(freePort())\"]\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let user: UInt32 = geteuid() == 0 ? 65534 : geteuid()
        var argv = [binary(), "-c", config, "-b", dir.sub("logs"), "--drain"]
        if geteuid() == 0 { argv = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups"] + argv }
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        let p = try ChildProcess(argv[0], Array(argv.dropFirst()), environment: env, stderrPath: dir.sub("run.log"))
        defer {
            p.kill(SIGTERM)
            _ = p.wait()
            _ = p.readAll()
        }
        // Wait until the binary (not setpriv) runs and has set its limits.
        var limits = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p.pid)/exe")) ?? ""
            limits = exe.hasSuffix("cloudtrailbeat") ? ((try? String(contentsOfFile: "/proc/\(p.pid)/limits", encoding: .utf8)) ?? "") : ""
            if limits.contains("Max core file size") && FileManager.default.fileExists(atPath: dir.sub("journal/data.mdb")) { break }
            usleep(50_000)
        }
        let core = limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") }.map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        #expect(core.map { Array($0.suffix(3)) } == ["0", "0", "bytes"], "\(limits)")
        let status = (try? String(contentsOfFile: "/proc/\(p.pid)/status", encoding: .utf8)) ?? ""
        #expect(status.contains("Uid:\t\(user)\t"), "runs as \(user): \(status.prefix(400))")
        var st = stat()
        #expect(stat("/proc/\(p.pid)/environ", &st) == 0 && st.st_uid == 0, "not dumpable: its /proc files belong to root (owner \(st.st_uid))")
    }
}
