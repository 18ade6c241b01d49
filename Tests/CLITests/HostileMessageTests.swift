import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// What someone who can write one message to the queue can make the shipper do: nothing outside the
/// allowed buckets is read or contacted, each hostile message is quarantined with its reason, the real
/// logs beside them all arrive, and `--drain` ends (issue 31's first acceptance point).
@Suite("Hostile messages next to real notifications", .serialized)
struct HostileMessageTests {
    /// The allowed bucket has a dot in its name, so that it is addressed path style even when virtual-host
    /// addressing is configured (as the SDKs do: a dotted name is not one DNS label) and moto can serve it.
    static let bucket = "cloudtrail-demo.logs"

    @Test(arguments: [true, false])
    func nothingOutsideTheAllowedBucketsIsReadOrContacted(pathStyle: Bool) throws {
        let stack = try Stack(objects: 0, bad: false) { text in
            text = text.replacingOccurrences(
                of: "  path_style: true\n",
                with: "  path_style: \(pathStyle)\n  buckets: [\"cloudtrail-demo*\"]\n  accounts: [\"123456789012\"]\n  max_fetch_attempts: 2\n")
        }
        let listener = try fixtureServer("AWSTests/Fixtures/connection_counter.py", name: "listener")
        defer { listener.stop() }
        func connections() -> Int {
            ((try? String(contentsOfFile: listener.logPath, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.hasPrefix("connection ") }.count
        }
        // The harness's own readiness probe connected once: wait until the listener has logged it.
        let deadline = Date().addingTimeInterval(30)
        while connections() < 1 && Date() < deadline { usleep(20_000) }
        let probes = connections()
        try #require(probes == 1, "the listener did not log the readiness probe")
        let script = Stack.repo.appendingPathComponent("Tests/AWSTests/Fixtures/hostile_messages.py").path
        try #require(
            system("python3 '\(script)' \(stack.moto.url) '\(stack.dir.path)' \(listener.port) \(Self.bucket) > '\(stack.dir.sub("hostile.log"))' 2>&1") == 0,
            "hostile_messages.py failed: \((try? String(contentsOfFile: stack.dir.sub("hostile.log"), encoding: .utf8)) ?? "")")
        let plan = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stack.dir.sub("hostile.json")))) as? [String: Any])
        let expected = try #require(plan["expected"] as? [String])
        let forged = try #require(plan["forged"] as? [String])
        let ids = try #require(plan["ids"] as? [String: String])
        let dotdot = try #require(plan["dotdot"] as? String)

        // --drain ends by itself; a run still going after five minutes is killed and fails the test.
        let p = try stack.start(["-c", stack.config, "--drain"])
        let end = p.wait(timeout: 300)
        _ = p.readAll()
        let log = (try? String(contentsOfFile: stack.dir.sub("engine.log"), encoding: .utf8)) ?? ""
        let ended = try #require(end, "--drain did not end within 300 s: \(log.suffix(3000))")
        #expect(ended.exited && ended.code == 0, "\(log.suffix(3000))")

        // The real logs all arrive, once; nothing forged does.
        let emitted = try stack.emitted()
        #expect(emitted.sorted() == expected.sorted(), "\(emitted.count) events shipped, \(expected.count) expected")
        for id in forged {
            #expect(!emitted.contains { $0.contains(id) }, "\(id) was shipped")
        }

        // Nothing outside the allowed buckets was contacted or read.
        #expect(connections() == probes, "the listener was contacted: \((try? String(contentsOfFile: listener.logPath, encoding: .utf8)) ?? "")")
        stack.moto.settle()
        let requests = ((try? String(contentsOfFile: stack.moto.logPath, encoding: .utf8)) ?? "").split(separator: "\n")
        let otherBucket = requests.filter { ($0.contains("\"GET /other-bucket") || $0.contains("\"HEAD /other-bucket")) }
        #expect(otherBucket.isEmpty, "moto served the other bucket: \(otherBucket.prefix(3))")
        // The 1 800 keys are numbered 780000…781799 (`_<16 digits>.json.gz`); the real ones 778000…778004.
        let manyKeys = requests.filter { $0.contains("_" + String(repeating: "0", count: 10) + "78") }
        #expect(manyKeys.isEmpty, "a key of the 1 800-key message was requested: \(manyKeys.prefix(3))")

        // Each refusal is quarantined with its reason.
        let status = try stack.run(["journal", "status", "-c", stack.config, "--json"], log: "status.log").1
        let report = try #require(try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])
        let quarantined = try #require(report["quarantined"] as? [[String: Any]])
        func reason(message name: String) -> String {
            quarantined.first { $0["messageId"] as? String == ids[name] }?["reason"] as? String ?? "(not quarantined)"
        }
        #expect(reason(message: "file").contains("is not an S3 bucket name"), "\(reason(message: "file"))")
        #expect(reason(message: "userinfo").contains("is not an S3 bucket name"), "\(reason(message: "userinfo"))")
        #expect(reason(message: "controls").contains("control character U+000A"), "\(reason(message: "controls"))")
        #expect(reason(message: "many").contains("1800 objects, more than input.max_keys_per_message (100)"), "\(reason(message: "many"))")
        let climbing = quarantined.first { $0["key"] as? String == dotdot }
        #expect(climbing != nil, "the ../ key was not quarantined: \(quarantined.map { $0["key"] ?? $0["messageId"] ?? "?" })")
        #expect(climbing?["bucket"] as? String == Self.bucket)
        #expect(quarantined.count == 5, "\(quarantined.map { $0["reason"] ?? "?" })")

        // The key's newline and escape forge no log line and move no cursor, in the log or in the status.
        let text = try stack.run(["journal", "status", "-c", stack.config], log: "status.log").1
        for (what, output) in [("the log", log), ("journal status", text)] {
            #expect(!output.contains("\u{1B}"), "\(what) holds a raw escape")
            #expect(!output.split(separator: "\n").contains { $0.hasPrefix("2026-12-08T00:00:00+0000 info") }, "\(what) holds a forged line")
        }
        #expect(text.contains("x.json.gz\\n2026-12-08T00:00:00+0000 info cloudtrailbeat : all clear\\u{1B}[2J"))
    }
}
