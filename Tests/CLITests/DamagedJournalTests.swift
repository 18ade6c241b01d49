import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Acceptance 4 of issue 31: a truncated journal, one with garbage pages and a 0-byte data.mdb each end
/// `journal status` and a run with the clear error (the path, what to do) and exit 65, and nothing is
/// shipped twice. Through the real binary, a local-copy backfill and the file output.
@Suite("A damaged journal ends a run and journal status with exit 65", .serialized)
struct DamagedJournalTests {
    /// The eventIDs in the file output, in order.
    func shipped(_ out: String) throws -> [String] {
        let text = (try? String(contentsOfFile: out + "/cloudtrailbeat.ndjson", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let r = line.range(of: "\"eventID\":\"") else { return nil }
            return String(line[r.upperBound...].prefix { $0 != "\"" })
        }
    }

    @Test(arguments: ["truncated", "garbage pages", "empty data.mdb"])
    func aDamagedJournalIsRefusedAndNothingIsShippedTwice(damage: String) throws {
        let dir = TempDir("damaged")
        let logs = dir.sub("logs")
        for (n, tag) in ["a", "b", "c", "d"].enumerated() {
            try writeLog(logs + "/AWSLogs/111111111111/CloudTrail/us-east-1/2026/11/26/111111111111_CloudTrail_us-east-1_20261126T000\(n)Z_\(tag).json.gz", tag: tag, count: 50)
        }
        let journal = dir.sub("journal")
        let config = dir.sub("c.yml")
        try "journal:\n  path: \(journal)\noutput:\n  file:\n    path: \(dir.sub("out"))\n".write(toFile: config, atomically: true, encoding: .utf8)
        let first = try run(["-c", config, "-b", logs, "--drain"])
        #expect(first.status == 0, "\(first.stderr)")
        let once = try shipped(dir.sub("out"))
        #expect(once.count == 200 && Set(once).count == 200, "\(once.count) events shipped")
        try FileManager.default.copyItem(atPath: journal, toPath: dir.sub("good"))

        let data = journal + "/data.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: data)[.size] as? Int)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let cause: String
        switch damage {
        case "truncated":
            #expect(truncate(data, off_t(size / 2)) == 0)
            cause = "'\(data)' is truncated: \(size / 2) bytes"
        case "garbage pages":
            var rng = SplitMix64(seed: 31)
            let handle = try #require(FileHandle(forWritingAtPath: data))
            try handle.seek(toOffset: UInt64(2 * page))
            handle.write(Data((2 * page..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }))
            try handle.close()
            cause = "is damaged: "
        default:
            #expect(truncate(data, 0) == 0)
            cause = "'\(data)' is empty (0 bytes)"
        }
        let damaged = FileManager.default.contents(atPath: data)

        for command in [["journal", "status", "-c", config], ["journal", "status", "--path", journal, "--json"], ["-c", config, "-b", logs, "--drain"]] {
            let r = try run(command)
            #expect(r.status == 65, "\(command): exit \(r.status): \(r.stderr)")
            #expect(r.stderr.hasPrefix("cloudtrailbeat: the journal in '\(journal)' is damaged") && r.stderr.contains(cause), "\(command): \(r.stderr)")
            #expect(r.stderr.contains("restore it from a backup") && r.stderr.contains("mv '\(journal)' '\(journal).damaged'")
                    && r.stderr.contains("ships every object again"), "\(command): \(r.stderr)")
            #expect(r.stdout.isEmpty, "\(command): \(r.stdout)")
        }
        #expect(FileManager.default.contents(atPath: data) == damaged, "the damaged journal is left as it was")
        #expect(try shipped(dir.sub("out")) == once, "nothing shipped again")

        // The journal restored from the backup: the run resumes, and ships nothing twice.
        try FileManager.default.removeItem(atPath: journal)
        try FileManager.default.moveItem(atPath: dir.sub("good"), toPath: journal)
        let restored = try run(["-c", config, "-b", logs, "--drain"])
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect(try shipped(dir.sub("out")) == once)
    }
}
