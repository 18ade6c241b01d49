import Foundation
import Testing

@testable import Journal
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

func binary() -> String {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("cloudtrailbeat").path
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the real binary (optionally as another user through setpriv) and collects its output.
func run(_ arguments: [String], asUser uid: UInt32? = nil) throws -> RunResult {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ctb-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let out = dir.appendingPathComponent("out").path, err = dir.appendingPathComponent("err").path
    var argv = [binary()] + arguments
    if let uid { argv = ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"] + argv }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    closeInheritedDescriptors(&actions)
    let cargs = argv.map { strdup($0) } + [nil]
    defer { cargs.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, cargs, environ)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return RunResult(
        status: (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f),
        stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

func temporaryDirectory(_ name: String) -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ctb-\(name)-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite("The CLI refuses bad journal places")
struct BadPlacesTests {
    @Test(arguments: [["journal", "status", "--path"], ["journal", "gc", "--path"]])
    func aFileIsNotAJournalDirectory(command: [String]) throws {
        let dir = temporaryDirectory("file")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/not-a-dir"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: file))
        let r = try run(command + [file])
        #expect(r.status != 0)
        #expect(r.stderr.contains("'\(file)'") && r.stderr.contains("not a directory"), "\(r.stderr)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "precious", "nothing overwritten")
        // Below a file: the component in the way is named.
        let below = try run(command + [file + "/journal"])
        #expect(below.status != 0 && below.stderr.contains(file), "\(below.stderr)")
    }

    @Test func anUnwritableDirectoryIsRefused() throws {
        let dir = temporaryDirectory("ro")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = dir + "/journal"
        try FileManager.default.createDirectory(atPath: journal, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: journal)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir)
        // Root may write anywhere: run as nobody then, as an operator's service user would be.
        let uid: UInt32? = geteuid() == 0 ? 65534 : nil
        let r = try run(["journal", "gc", "--path", journal], asUser: uid)
        #expect(r.status != 0)
        #expect(r.stderr.contains("'\(journal)'") && r.stderr.contains("not writable"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: journal).isEmpty, "nothing created")
        // And a directory that cannot be created.
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: dir)
        let r2 = try run(["journal", "gc", "--path", dir + "/new/journal"], asUser: uid)
        #expect(r2.status != 0 && r2.stderr.contains(dir + "/new/journal"), "\(r2.stderr)")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir)
    }

    @Test func aNewerFormatIsRefusedAndLeftUntouched() async throws {
        let dir = temporaryDirectory("newer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let j = try Journal(path: dir, options: { var o = Journal.Options(); o.outputs = ["x"]; return o }())
            _ = try await j.receive(ReceivedMessage(id: "m", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ObjectRef(bucket: "b", key: "k"))]))
            try await j.overwriteFormatVersion(Journal.formatVersion + 1)
            j.close()
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: dir + "/data.mdb"))
        for command in [["journal", "status", "--path", dir], ["journal", "gc", "--path", dir]] {
            let r = try run(command)
            #expect(r.status != 0)
            #expect(r.stderr.contains("'\(dir)'") && r.stderr.contains("format version \(Journal.formatVersion + 1)"), "\(r.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/data.mdb")) == before, "nothing overwritten")
        #expect(throws: JournalError.self) { _ = try Journal(path: dir) }
    }

    @Test func statusOfAMissingJournalSaysSo() throws {
        let r = try run(["journal", "status", "--path", "/nonexistent/ctb-journal"])
        #expect(r.status != 0 && r.stderr.contains("no journal in '/nonexistent/ctb-journal'"), "\(r.stderr)")
    }

    @Test func statusShowsQuarantineAsJSON() async throws {
        let dir = temporaryDirectory("status")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            var o = Journal.Options()
            o.outputs = ["file"]
            let j = try Journal(path: dir, options: o)
            let ref = ObjectRef(bucket: "trail", key: "AWSLogs/1/CloudTrail/x.json.gz", version: "e")
            _ = try await j.receive(ReceivedMessage(id: "m1", receiptHandle: "h", receiveCount: 1, objects: [DiscoveredObject(ref)]))
            _ = try await j.quarantineObject(ref, reason: "gzip: invalid header at byte 0")
            _ = try await j.quarantineMessage(id: "m2", receiptHandle: "h2", receiveCount: 3, reason: "unrecognised message: not JSON", detail: "hello")
            j.close()
        }
        let r = try run(["journal", "status", "--path", dir, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let quarantined = try #require(json["quarantined"] as? [[String: Any]])
        #expect(quarantined.count == 2)
        let object = try #require(quarantined.first { $0["kind"] as? String == "object" })
        #expect(object["bucket"] as? String == "trail" && object["key"] as? String == "AWSLogs/1/CloudTrail/x.json.gz")
        #expect(object["reason"] as? String == "gzip: invalid header at byte 0")
        #expect((json["objects"] as? [String: Int])?["quarantined"] == 1)
        #expect((json["messages"] as? [String: Int])?["complete"] == 1)
        let text = try run(["journal", "status", "--path", dir])
        #expect(text.status == 0 && text.stdout.contains("reason: unrecognised message: not JSON"), "\(text.stdout)")
    }
}
