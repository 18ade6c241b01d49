import Foundation
import HTTP
import Testing
import TestSupport

@testable import Outputs

#if canImport(Glibc)
import Glibc
#endif

func fixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
}

func events(_ range: Range<Int>, day: String = "2026-11-28") -> [OutputEvent] {
    range.map { OutputEvent(id: "e\($0)", json: Array("{\"@timestamp\":\"\(day)T10:00:00.000Z\",\"type\":\"CloudTrail\",\"cloudtrail\":{\"i\":\($0)},\"s3\":{\"bucket\":\"b\",\"key\":\"k\"}}".utf8)) }
}

/// The `i` of each event line.
func indices(_ lines: [String]) -> [Int] {
    lines.compactMap { line in
        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        return ((o["cloudtrail"] as? [String: Any])?["i"] as? Int) ?? (o["i"] as? Int)
    }
}

func redis(dir: String, port: Int? = nil) throws -> LocalServer {
    let p = port ?? freePort()
    return try LocalServer(
        ["redis-server", "--port", String(p), "--bind", "127.0.0.1", "--dir", dir, "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        port: p, name: "redis", installHint: "apt-get install redis-server (scripts/setup does it)")
}

func redisList(_ port: Int, _ key: String) throws -> [String] {
    let tmp = TempDir("redis-cli")
    let out = tmp.sub("out")
    let cli = try #require(LocalServer.which("redis-cli"), "redis-cli missing: apt-get install redis-tools")
    #expect(system("\(cli) -p \(port) --raw LRANGE \(key) 0 -1 > \(out)") == 0)
    return try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
}

@Suite("redis output against a real redis-server")
struct RedisOutputTests {
    @Test func tenThousandEventsInOrderAcrossARestart() async throws {
        let dir = TempDir("redis")
        var server: LocalServer? = try redis(dir: dir.path)
        let port = server!.port
        var config = RedisOutput.Configuration()
        config.hosts = ["127.0.0.1:\(port)"]
        config.key = "cloudtrail"
        config.maxBatch = 100
        let output = try RedisOutput(config)
        let pump = OutputPump(output: output, deadLetters: nil, minBackoff: 0.05, maxBackoff: 0.3)
        let all = events(0..<10_000)
        var restarted = false
        var ackedBeforeStop = 0
        let restart = Task<LocalServer?, any Error> { nil }
        _ = restart
        var pending: Task<LocalServer, any Error>?
        try await pump.deliver(all) { done in
            if done >= 3000 && !restarted {
                restarted = true
                ackedBeforeStop = done
                server?.stop()
                server = nil
                pending = Task {
                    try await Task.sleep(nanoseconds: 700_000_000)
                    return try redis(dir: dir.path, port: port)
                }
            }
        }
        let second = try await pending!.value
        defer { second.stop() }
        #expect(restarted && pump.retries > 0, "the output saw the server go away")
        let got = indices(try redisList(port, "cloudtrail"))
        // Every event, in order of first appearance; duplicates only from the slice in flight at the stop.
        #expect(Set(got) == Set(0..<10_000))
        var seen = Set<Int>()
        let firsts = got.filter { seen.insert($0).inserted }
        #expect(firsts == Array(0..<10_000))
        #expect(got.count - 10_000 <= 100, "\(got.count - 10_000) duplicates")
        #expect(Set(got.prefix(ackedBeforeStop)) == Set(0..<ackedBeforeStop), "the acknowledged ones survived the restart")
        await output.close()
    }

    @Test func channelPublishIsAcknowledgedAndAuthIsSent() async throws {
        let dir = TempDir("redis-auth")
        let port = freePort()
        let server = try LocalServer(
            ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir.path, "--requirepass", "s3cret", "--save", ""],
            port: port, name: "redis", installHint: "apt-get install redis-server")
        defer { server.stop() }
        var config = RedisOutput.Configuration()
        config.hosts = ["127.0.0.1:\(port)"]
        config.datatype = "channel"
        config.password = "s3cret"
        config.db = 2
        let report = try await RedisOutput(config).deliver(events(0..<50))
        #expect(report.handled == 50)
        config.password = "wrong"
        await #expect { _ = try await RedisOutput(config).deliver(events(0..<1)) } throws: { ($0 as? OutputError)?.retryable == false }
    }
}

/// A Python protocol test server of Fixtures/ (es_server.py, hec_server.py) on a free port.
func protocolServer(_ script: String, name: String) throws -> LocalServer {
    let port = freePort()
    return try LocalServer(["python3", fixture(script), String(port)], port: port, name: name, installHint: "python3 is needed")
}

/// POSTs `json` to a protocol test server's /_script (how the tests script its behaviour).
func script(_ server: LocalServer, _ json: String) async throws {
    _ = try await HTTPClient().send(HTTPRequest(method: "POST", url: server.url + "/_script", headers: [("Content-Type", "application/json")], body: Array(json.utf8)))
}

/// What a protocol test server saw (GET /_test/stats).
func stats(_ server: LocalServer) async throws -> [String: Any] {
    let r = try await HTTPClient().send(HTTPRequest(method: "GET", url: server.url + "/_test/stats"))
    return try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
}

@Suite("elasticsearch output against a protocol-faithful test server")
struct ElasticsearchOutputTests {
    func server() throws -> LocalServer { try protocolServer("es_server.py", name: "es") }

    /// ILM: the policy goes in before the template that names it; one that exists is left alone unless
    /// `overwrite`; rollover only for a data stream; a policy Elasticsearch refuses is a clear error.
    @Test func aLifecyclePolicyIsInstalledBeforeTheTemplateThatNamesIt() async throws {
        let es = try server()
        var config = ElasticsearchOutput.Configuration()
        config.hosts = [es.url]
        config.installTemplate = true
        config.dataStream = ElasticsearchOutput.DataStream()
        var ilm = ElasticsearchOutput.ILM()
        ilm.deleteAfter = "365d"
        ilm.rolloverMaxAge = "7d"
        config.ilm = ilm
        #expect(try await ElasticsearchOutput(config).deliver(events(0..<3)).handled == 3)
        var s = try await stats(es)
        func policy(_ name: String = "cloudtrailbeat") -> [String: Any]? { ((s["ilm_policies"] as? [String: Any])?[name] as? [String: Any])?["policy"] as? [String: Any] }
        func at(_ json: [String: Any]?, _ path: String) -> Any? {
            path.split(separator: ".").reduce(json as Any?) { ($0 as? [String: Any])?[String($1)] }
        }
        #expect(at(policy(), "phases.hot.actions.rollover.max_age") as? String == "7d")
        #expect(at(policy(), "phases.hot.actions.rollover.max_primary_shard_size") as? String == "50gb")
        #expect(at(policy(), "phases.delete.min_age") as? String == "365d" && at(policy(), "phases.delete.actions.delete") != nil)
        let template = (s["templates"] as? [String: Any])?["cloudtrailbeat"] as? [String: Any]
        #expect(at(template, "template.settings").map { ($0 as? [String: Any])?["index.lifecycle.name"] as? String } == "cloudtrailbeat")
        #expect(s["ilm_puts"] as? Int == 1)

        // A policy of that name already there (an administrator tuned it): left as it is.
        _ = try await HTTPClient().send(HTTPRequest(
            method: "PUT", url: es.url + "/_ilm/policy/cloudtrailbeat", headers: [("Content-Type", "application/json")],
            body: Array(#"{"policy":{"phases":{"hot":{"actions":{"set_priority":{"priority":7}}}}}}"#.utf8)))
        #expect(try await ElasticsearchOutput(config).deliver(events(3..<4)).handled == 1)
        s = try await stats(es)
        #expect(s["ilm_puts"] as? Int == 2 && at(policy(), "phases.hot.actions.set_priority.priority") as? Int == 7, "the administrator's policy is kept")
        config.ilm?.overwrite = true
        #expect(try await ElasticsearchOutput(config).deliver(events(4..<5)).handled == 1)
        s = try await stats(es)
        #expect(s["ilm_puts"] as? Int == 3 && at(policy(), "phases.hot.actions.rollover") != nil, "overwrite replaces it")

        // Daily indices have no alias to roll over: the policy has no rollover.
        var daily = config
        daily.dataStream = nil
        daily.ilm?.policyName = "daily"
        #expect(try await ElasticsearchOutput(daily).deliver(events(5..<6)).handled == 1)
        s = try await stats(es)
        #expect(policy("daily") != nil && at(policy("daily"), "phases.hot.actions.rollover") == nil && at(policy("daily"), "phases.delete.min_age") as? String == "365d")

        // A policy Elasticsearch refuses: a configuration error with its reason; nothing is shipped.
        var bad = config
        bad.ilm?.policyName = "bad"
        bad.ilm?.policy = Array(#"{"policy":{"phases":{"lukewarm":{"actions":{}}}}}"#.utf8)
        let refusal = await #expect(throws: OutputError.self) { _ = try await ElasticsearchOutput(bad).deliver(events(6..<7)) }
        #expect(refusal?.code == .configuration && refusal?.message.contains("invalid lifecycle policy: unknown phase lukewarm") == true, "\(String(describing: refusal))")
    }

    @Test func itemStatusesRetriesDeadLettersSplitsAndIdempotence() async throws {
        let es = try server()
        let dir = TempDir("es")
        var config = ElasticsearchOutput.Configuration()
        config.hosts = ["http://127.0.0.1:1", es.url]  // the first host is down: failover
        config.username = "elastic"
        config.password = "changeme"
        config.bulkMaxSize = 10
        config.installTemplate = true
        let output = try ElasticsearchOutput(config)
        let dead = DeadLetterFile(path: dir.sub("dead-letter.ndjson"))
        let pump = OutputPump(output: output, deadLetters: dead, minBackoff: 0.02, maxBackoff: 0.2)
        try await script(es, #"{"ids": {"e3": [429, 429], "e5": [503]}, "reject": {"e7": "failed to parse field [cloudtrail.requestParameters] of type [flattened]"}, "whole": [500, 500]}"#)
        var progress: [Int] = []
        try await pump.deliver(events(0..<30)) { progress.append($0) }
        #expect(progress.last == 30)
        var s = try await stats(es)
        let docs = s["docs"] as! [String: Any]
        #expect(docs.count == 29, "all but the rejected one")
        #expect(docs["cloudtrail-2026.11.28/e3"] != nil && docs["cloudtrail-2026.11.28/e5"] != nil, "429 and 503 retried until accepted")
        #expect(docs["cloudtrail-2026.11.28/e7"] == nil)
        let items = s["items"] as! [String]
        #expect(items.filter { $0 == "e3" }.count == 3 && items.filter { $0 == "e5" }.count >= 2, "each retried until accepted")
        let letters = try String(contentsOfFile: dir.sub("dead-letter.ndjson"), encoding: .utf8).split(separator: "\n")
        #expect(letters.count == 1 && letters[0].contains("\"id\":\"e7\"") && letters[0].contains("mapper_parsing_exception: failed to parse field"))
        #expect((try JSONSerialization.jsonObject(with: Data(letters[0].utf8)) as? [String: Any])?["event"] != nil)
        let auth = (s["auth"] as! [Any]).compactMap { $0 as? String }
        #expect(!auth.isEmpty && auth.allSatisfy { $0 == "Basic " + Data("elastic:changeme".utf8).base64EncodedString() })
        #expect((s["bad"] as! [Any]).isEmpty, "every body ended with a newline")
        let template = (s["templates"] as! [String: Any])["cloudtrailbeat"] as? [String: Any]
        let mappings = ((template?["template"] as? [String: Any])?["mappings"] as? [String: Any])?["properties"] as? [String: Any]
        let ct = (mappings?["cloudtrail"] as? [String: Any])?["properties"] as? [String: Any]
        #expect((ct?["requestParameters"] as? [String: Any])?["type"] as? String == "flattened")

        // The same events again: every one is a 409, counted as delivered, nothing duplicated.
        let before = (s["items"] as! [Any]).count
        try await pump.deliver(events(0..<30).filter { $0.id != "e7" }) { _ in }
        s = try await stats(es)
        #expect((s["docs"] as! [String: Any]).count == 29)
        #expect((s["items"] as! [Any]).count == before + 29)

        // 413: the batch is split until it fits.
        try await script(es, #"{"max_items": 3}"#)
        var steps: [Int] = []
        try await pump.deliver(events(100..<110, day: "2026-11-29")) { steps.append($0) }
        #expect(steps.last == 10 && steps.count >= 4)
        s = try await stats(es)
        #expect((s["docs"] as! [String: Any]).keys.filter { $0.hasPrefix("cloudtrail-2026.11.29/") }.count == 10)
        await output.close()
    }

    @Test func apiKeyHeader() async throws {
        let es = try server()
        var config = ElasticsearchOutput.Configuration()
        config.hosts = [es.url]
        config.apiKey = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        config.index = "ct-%{+yyyy}"
        #expect(try await ElasticsearchOutput(config).deliver(events(0..<3)).handled == 3)
        let s = try await stats(es)
        #expect((s["auth"] as! [Any]).compactMap { $0 as? String } == ["ApiKey " + config.apiKey!])
        #expect((s["docs"] as! [String: Any]).keys.allSatisfy { $0.hasPrefix("ct-2026/") })
    }

    /// An OCSF event does not begin with `@timestamp`: its index date comes from the time the codec reported.
    @Test func eventsWithoutATimestampPrefixAreIndexedByTheirTime() async throws {
        let es = try server()
        var config = ElasticsearchOutput.Configuration()
        config.hosts = [es.url]
        let ocsf = OutputEvent(id: "o1", json: Array(#"{"time":1795903669000,"class_uid":6003}"#.utf8), timestamp: Array("2026-11-30T22:07:49.000Z".utf8))
        let bare = OutputEvent(id: "o2", json: Array(#"{"time":1795903669000}"#.utf8))
        #expect(try await ElasticsearchOutput(config).deliver([ocsf, bare]).handled == 2)
        let docs = (try await stats(es))["docs"] as! [String: Any]
        #expect(docs.keys.contains("cloudtrail-2026.11.30/o1") && docs.keys.contains("cloudtrail-1970.01.01/o2"), "\(docs.keys.sorted())")
    }

    @Test func theShippedTemplateIsValidJSON() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/Outputs/Resources/cloudtrail-index-template.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect((json["index_patterns"] as? [String]) == ["cloudtrail-*"])
        #expect(ElasticsearchOutput.template.contains("flattened"))
    }
}

@Suite("logstash output against a Lumberjack v2 test server")
struct LogstashOutputTests {
    func server(_ mode: String, _ log: String) throws -> LocalServer {
        let port = freePort()
        return try LocalServer(["python3", fixture("lumberjack_server.py"), String(port), mode, log], port: port, name: "lumberjack", installHint: "python3 is needed")
    }

    func lines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    @Test(arguments: [Int32(0), 3])
    func windowsOfPlainAndCompressedFramesDecode(level: Int32) async throws {
        let dir = TempDir("lj")
        let server = try server("full", dir.sub("log"))
        var config = LogstashOutput.Configuration()
        config.hosts = ["127.0.0.1:\(server.port)"]
        config.compressionLevel = level
        config.bulkMaxSize = 50
        let output = try LogstashOutput(config)
        #expect(try await output.deliver(events(0..<50)).handled == 50)
        #expect(try await output.deliver(events(50..<60)).handled == 10, "a second window on the same connection")
        let log = try lines(dir.sub("log"))
        let received = log.filter { $0["event"] != nil }
        #expect(indices(received.map { String(data: try! JSONSerialization.data(withJSONObject: $0["event"]!), encoding: .utf8)! }) == Array(0..<60))
        #expect(received.allSatisfy { ($0["compressed"] as? Bool) == (level > 0) })
        #expect(Set(received.map { $0["conn"] as! Int }) == [1])
    }

    @Test func partialAcksAndKeepalivesAreFollowed() async throws {
        for mode in ["partial", "keepalive"] {
            let dir = TempDir("lj-\(mode)")
            let server = try server(mode, dir.sub("log"))
            var config = LogstashOutput.Configuration()
            config.hosts = ["127.0.0.1:\(server.port)"]
            // Keepalives 0.6 s apart keep a 1 s timeout from firing over ~1.8 s without progress.
            config.timeout = 1
            #expect(try await LogstashOutput(config).deliver(events(0..<20)).handled == 20, "\(mode)")
            let acks = try lines(dir.sub("log")).compactMap { $0["ack"] as? Int }
            #expect(acks == (mode == "partial" ? [3, 6, 9, 12, 15, 18, 20] : [20]), "\(mode)")
        }
    }

    @Test func aDroppedConnectionAcknowledgesOnlyWhatTheServerAckedAndResends() async throws {
        let dir = TempDir("lj-drop")
        let server = try server("drop", dir.sub("log"))
        var config = LogstashOutput.Configuration()
        config.hosts = ["127.0.0.1:\(server.port)"]
        config.timeout = 2
        let output = try LogstashOutput(config)
        let first = try await output.deliver(events(0..<20))
        #expect(first.handled == 10, "only the server's ACK 10 counts")
        let pump = OutputPump(output: output, deadLetters: nil, minBackoff: 0.01, maxBackoff: 0.1)
        try await pump.deliver(events(0..<20), from: first.handled) { _ in }
        let log = try lines(dir.sub("log"))
        let second = log.filter { ($0["conn"] as? Int) == 2 && $0["event"] != nil }
        #expect(indices(second.map { String(data: try! JSONSerialization.data(withJSONObject: $0["event"]!), encoding: .utf8)! }) == Array(10..<20), "every unacked event resent after reconnect")
    }
}

@Suite("file output", .serialized)
struct FileOutputTests {
    @Test func killedAtRandomMomentsKeepsEveryAcknowledgedEvent() throws {
        let child = productsDirectory().appendingPathComponent("output-crash-child").path
        try #require(FileManager.default.isExecutableFile(atPath: child), "build the output-crash-child product first")
        let dir = TempDir("file-kill")
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        var acked = 0
        for round in 0..<15 {
            var env = ProcessInfo.processInfo.environment
            env["SWIFT_BACKTRACE"] = "enable=no"
            let p = try ChildProcess(child, [dir.path, String(acked)], environment: env)
            usleep(UInt32.random(in: 20_000...150_000, using: &rng))
            p.kill()
            _ = p.wait()
            let reported = p.readAll().split(separator: "\n").compactMap { Int($0) }
            acked = reported.last ?? acked
            // Read every file back: each line whole JSON, every acknowledged event present. Only the
            // current file may end in a torn line (the batch the kill interrupted); the next start cuts
            // it, which the next round sees: a tail left uncut would be a torn line in the middle.
            var ids = Set<Int>()
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
                let text = try String(contentsOfFile: dir.sub(name), encoding: .utf8)
                for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
                    let o = try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "round \(round): a torn line in \(name)")
                    ids.insert(Int((o["id"] as! String).dropFirst())!)
                }
                #expect(name == "cloudtrailbeat.ndjson" || text.hasSuffix("\n"), "round \(round): \(name) was rotated with a torn tail")
            }
            #expect(Set(0..<acked).isSubset(of: ids), "round \(round): an acknowledged event is missing")
        }
        #expect(acked > 500, "the child made progress (\(acked))")
    }

    /// What a crash leaves after the last whole line is cut before anything is appended, in the output
    /// file and in the dead-letter file alike.
    @Test func aTornTailIsCutBeforeTheNextAppend() async throws {
        let dir = TempDir("torn")
        let whole = #"{"id":"e0"}"# + "\n"
        for (existing, kept) in [(whole + #"{"id":"e1","pa"#, whole), (#"{"id":"#, ""), (whole, whole), ("", "")] {
            try FileManager.default.createDirectory(atPath: dir.sub("out"), withIntermediateDirectories: true)
            try existing.write(toFile: dir.sub("out/cloudtrailbeat.ndjson"), atomically: false, encoding: .utf8)
            let output = try FileOutput(FileOutput.Configuration(path: dir.sub("out")))
            #expect(try await output.deliver(events(5..<7)).handled == 2)
            await output.close()
            let text = try String(contentsOfFile: dir.sub("out/cloudtrailbeat.ndjson"), encoding: .utf8)
            #expect(text.hasPrefix(kept) && indices(text.dropFirst(kept.count).split(separator: "\n").map(String.init)) == [5, 6], "after \(existing.debugDescription): \(text.debugDescription)")

            try (existing.isEmpty ? "" : #"{"output":"x","id":"e0"}"# + "\n" + #"{"output":"x","i"#).write(toFile: dir.sub("dead.ndjson"), atomically: false, encoding: .utf8)
            try DeadLetterFile(path: dir.sub("dead.ndjson")).write(output: "file", events: [(events(9..<10)[0], "refused")])
            let dead = try String(contentsOfFile: dir.sub("dead.ndjson"), encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            #expect(dead.last == "" && dead.dropLast().allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil }, "dead letters: \(dead)")
            #expect(dead.count == (existing.isEmpty ? 2 : 3))
            try FileManager.default.removeItem(atPath: dir.sub("out"))
        }
    }

    /// A write that fails part-way (here RLIMIT_FSIZE, as a full disk would) leaves no part of its batch
    /// behind: the retry appends after the last whole line, and nothing acknowledged is lost.
    @Test func aWriteThatFailsPartWayLeavesNoTornLine() throws {
        let child = productsDirectory().appendingPathComponent("output-crash-child").path
        try #require(FileManager.default.isExecutableFile(atPath: child), "build the output-crash-child product first")
        let dir = TempDir("fsize")
        // 64 KiB files; a 40 000-byte limit makes a batch fail in the middle of the first file.
        let p = try ChildProcess(child, [dir.path, "0", "40000"])
        let said = p.readAll().split(separator: "\n").map(String.init)
        let end = p.wait()
        #expect(end.exited && end.code == 0, "\(end) \(said.suffix(3))")
        let failure = try #require(said.first { $0.hasPrefix("failed: ") }, "no write failed: \(said.suffix(3))")
        #expect(failure.contains("File too large"), "\(failure)")
        let acked = try #require(Int(said.last ?? ""))
        let text = try String(contentsOfFile: dir.sub("cloudtrailbeat.ndjson"), encoding: .utf8)
        #expect(text.hasSuffix("\n"))
        let lines = text.split(separator: "\n")
        let ids = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["id"] as? String }
        #expect(ids.count == lines.count, "every line is whole JSON")
        #expect(ids == (0..<acked).map { "e\($0)" }, "every event once, in order, after the retry")
    }

    @Test func rotationKeepsNumberOfFilesAndFilesAre0600() async throws {
        let dir = TempDir("rotate")
        var config = FileOutput.Configuration(path: dir.sub("out"))
        config.filename = "ct.ndjson"
        config.rotateEveryKB = 2
        config.numberOfFiles = 3
        let output = try FileOutput(config)
        for start in stride(from: 0, to: 300, by: 10) {
            #expect(try await output.deliver(events(start..<start + 10)).handled == 10)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.sub("out")).count <= 3)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.sub("out")).sorted()
        #expect(names == ["ct.ndjson", "ct.ndjson.1", "ct.ndjson.2"])
        for name in names {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir.sub("out/\(name)"))
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            #expect((attributes[.size] as? Int ?? 0) <= 2048)
        }
        let newest = indices(try String(contentsOfFile: dir.sub("out/ct.ndjson"), encoding: .utf8).split(separator: "\n").map(String.init))
        #expect(newest.last == 299)
        let older = indices(try String(contentsOfFile: dir.sub("out/ct.ndjson.2"), encoding: .utf8).split(separator: "\n").map(String.init))
        #expect(older.first! < newest.first!)
        await output.close()
    }

    @Test func fileAndRedisAreIndependent() async throws {
        let dir = TempDir("two")
        let port = freePort()
        var fileConfig = FileOutput.Configuration(path: dir.sub("file"))
        fileConfig.maxBatch = 100
        var redisConfig = RedisOutput.Configuration()
        redisConfig.hosts = ["127.0.0.1:\(port)"]
        redisConfig.maxBatch = 100
        let file = OutputPump(output: try FileOutput(fileConfig), deadLetters: nil, minBackoff: 0.05, maxBackoff: 0.2)
        let red = OutputPump(output: try RedisOutput(redisConfig), deadLetters: nil, minBackoff: 0.05, maxBackoff: 0.2)
        let all = events(0..<2000)
        // Redis is down: the file output finishes regardless.
        let redisTask = Task { try await red.deliver(all) { _ in } }
        try await file.deliver(all) { _ in }
        #expect(indices(try String(contentsOfFile: dir.sub("file/cloudtrailbeat.ndjson"), encoding: .utf8).split(separator: "\n").map(String.init)) == Array(0..<2000))
        // Watched, not read after a fixed sleep: the suite in parallel on two cores starves async tasks.
        let deadline = Date().addingTimeInterval(600)
        while red.retries == 0 && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        #expect(red.retries > 0, "redis was retried while down")
        // Redis comes up: it catches up.
        let server = try redis(dir: dir.path, port: port)
        defer { server.stop() }
        try await redisTask.value
        #expect(indices(try redisList(port, "cloudtrailbeat")) == Array(0..<2000))
    }
}

@Suite("TLS for the TCP outputs")
struct TLSOutputTests {
    @Test func logstashOverTLSVerifiesTheServer() async throws {
        let dir = TempDir("tls")
        let openssl = try #require(LocalServer.which("openssl"), "openssl missing: apt-get install openssl")
        #expect(system("\(openssl) req -x509 -newkey rsa:2048 -nodes -keyout \(dir.sub("key.pem")) -out \(dir.sub("cert.pem")) -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null") == 0)
        let port = freePort()
        let server = try LocalServer(["python3", fixture("lumberjack_server.py"), String(port), "full", dir.sub("log"), dir.sub("cert.pem"), dir.sub("key.pem")],
                                     port: port, name: "lumberjack-tls", installHint: "python3 is needed")
        defer { server.stop() }
        var config = LogstashOutput.Configuration()
        config.timeout = 3
        // Trusted CA, by name and by IP: delivered.
        for host in ["localhost", "127.0.0.1"] {
            config.hosts = ["\(host):\(port)"]
            config.tls = TLSSettings(certificateAuthorities: [dir.sub("cert.pem")])
            #expect(try await LogstashOutput(config).deliver(events(0..<5)).handled == 5, "\(host)")
        }
        // The system trust store does not know the self-signed certificate: refused, nothing delivered.
        config.hosts = ["localhost:\(port)"]
        config.tls = TLSSettings()
        await #expect { _ = try await LogstashOutput(config).deliver(events(0..<5)) } throws: {
            "\($0)".contains("TLS handshake with localhost failed") && "\($0)".contains("self-signed")
        }
        // verification_mode: none accepts it (the operator's explicit choice).
        config.tls = TLSSettings(verify: false)
        #expect(try await LogstashOutput(config).deliver(events(0..<5)).handled == 5)
        let received = try String(contentsOfFile: dir.sub("log"), encoding: .utf8).split(separator: "\n").filter { $0.contains("\"event\"") }
        #expect(received.count == 15)
    }

    /// Against a real redis-server with TLS only (`--port 0 --tls-port`): delivered with the CA, refused without.
    @Test func redisOverTLSAgainstARealServer() async throws {
        let dir = TempDir("redis-tls")
        let openssl = try #require(LocalServer.which("openssl"), "openssl missing: apt-get install openssl")
        #expect(system("\(openssl) req -x509 -newkey rsa:2048 -nodes -keyout \(dir.sub("key.pem")) -out \(dir.sub("cert.pem")) -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null") == 0)
        let port = freePort()
        let server = try LocalServer(
            ["redis-server", "--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1", "--dir", dir.path, "--save", "",
             "--tls-cert-file", dir.sub("cert.pem"), "--tls-key-file", dir.sub("key.pem"), "--tls-auth-clients", "no"],
            port: port, name: "redis-tls", installHint: "apt-get install redis-server (Debian's is built with TLS)")
        defer { server.stop() }
        var config = RedisOutput.Configuration()
        config.hosts = ["localhost:\(port)"]
        config.key = "tls-list"
        config.tls = TLSSettings(certificateAuthorities: [dir.sub("cert.pem")])
        #expect(try await RedisOutput(config).deliver(events(0..<40)).handled == 40)
        config.tls = TLSSettings()
        await #expect { _ = try await RedisOutput(config).deliver(events(40..<41)) } throws: { "\($0)".contains("TLS handshake with localhost failed") }
        // What the server holds, read back over TLS with redis-cli.
        let cli = try #require(LocalServer.which("redis-cli"), "redis-cli missing: apt-get install redis-tools")
        let p = try ChildProcess(cli, ["--tls", "--cacert", dir.sub("cert.pem"), "-h", "localhost", "-p", String(port), "LLEN", "tls-list"])
        let count = p.readAll().trimmingCharacters(in: .whitespacesAndNewlines)
        _ = p.wait()
        #expect(count == "40")
    }
}
