import Foundation
@testable import HTTP
import Testing
import TestSupport

/// The HTTP client's transfer driver (Sources/HTTP/TransferDriver.swift) against a real HTTP/1.1 server:
/// many requests in flight on one thread, connections kept alive, a slow reader pausing only its own
/// transfer with every byte delivered once, and a cancelled stream ending its transfer.
@Suite("HTTP client: libcurl's multi interface on one thread")
struct HTTPClientTests {
    /// Threads of this process named as the client names its driver.
    func httpThreads() -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.filter { ((try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix(TransferDriver.threadName) }.count
    }

    func client(concurrent: Int, buffer: Int = 2 << 20) -> HTTPClient {
        var c = HTTPClient.Configuration()
        c.maxConcurrent = concurrent
        c.streamBuffer = buffer
        return HTTPClient(configuration: c)
    }

    @Test func sixtyFourRequestsRunAtOnceOnOneThreadOverKeptConnections() async throws {
        let server = try protocolServer("transfer_server.py", name: "transfer")
        let http = client(concurrent: 64)
        let before = httpThreads()
        let sampler = Task {
            var most = 0
            while !Task.isCancelled {
                most = max(most, httpThreads())
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
            return most
        }
        let answers = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<64 { group.addTask { try await http.send(HTTPRequest(method: "GET", url: server.url + "/together?n=64")).status } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        sampler.cancel()
        let threads = await sampler.value
        #expect(answers == Array(repeating: 200, count: 64))
        // One driver thread for all 64 (other suites' clients, running meanwhile, have a driver each).
        #expect(threads - before <= 8, "\(threads - before) driver threads for 64 transfers in flight")
        let first = try await stats(server)
        // The server answers them once all 64 are in flight together.
        #expect((first["max_in_flight"] as? Int ?? 0) == 64, "\(first)")
        // A second round reuses the connections the first one opened: 20 requests, no new connection (one
        // at most: libcurl retires a connection idle for 118 s, which a starved test machine can reach).
        for _ in 0..<20 { _ = try await http.send(HTTPRequest(method: "GET", url: server.url + "/slow?ms=0")) }
        let second = try await stats(server)
        #expect((second["connections"] as? Int ?? 0) - (first["connections"] as? Int ?? 0) <= 1, "kept alive: \(first) then \(second)")
        #expect((second["requests"] as? Int ?? 0) - (first["requests"] as? Int ?? 0) == 20)
    }

    @Test func aSlowReaderPausesOnlyItsTransferAndGetsEveryByteOnce() async throws {
        let server = try protocolServer("transfer_server.py", name: "transfer")
        let limit = 256 << 10
        let http = client(concurrent: 8, buffer: limit)
        let (head, body) = try await http.stream(HTTPRequest(method: "GET", url: server.url + "/big?mb=16"))
        #expect(head.status == 200)
        var iterator = body.makeAsyncIterator()
        var received = 0
        var wrong = 0
        func check(_ chunk: [UInt8]) {
            for (i, b) in chunk.enumerated() where b != UInt8((received + i) % 251) { wrong += 1 }
            received += chunk.count
        }
        check(try await iterator.next() ?? [])
        // The reader rests: the channel fills to its bound and the transfer pauses, while other requests
        // on the same client go on.
        for _ in 0..<5 { #expect(try await http.send(HTTPRequest(method: "GET", url: server.url + "/slow?ms=10")).status == 200) }
        var filled = 0
        for _ in 0..<200 where filled < limit {
            filled = body.channel.bufferedBytes
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(filled >= limit, "the channel filled to its bound: \(filled)")
        try await Task.sleep(nanoseconds: 200_000_000)
        // At most the bound plus one chunk (libcurl's 16 KiB; a CURL_WRITEFUNC_PAUSE keeps the rest).
        #expect(body.channel.bufferedBytes <= limit + (64 << 10), "buffered \(body.channel.bufferedBytes) of a \(limit) bound")
        while let chunk = try await iterator.next() { check(chunk) }
        #expect(received == 16 << 20)
        #expect(wrong == 0, "every byte in order, none lost or repeated across pauses")
    }

    @Test func cancellingAPausedStreamEndsItsTransferAndTheClientGoesOn() async throws {
        let server = try protocolServer("transfer_server.py", name: "transfer")
        let http = client(concurrent: 4, buffer: 64 << 10)
        let (_, body) = try await http.stream(HTTPRequest(method: "GET", url: server.url + "/big?mb=256"))
        var iterator = body.makeAsyncIterator()
        _ = try await iterator.next()
        for _ in 0..<200 where body.channel.bufferedBytes < 64 << 10 { try await Task.sleep(nanoseconds: 20_000_000) }
        body.cancel()
        var aborted = 0
        for _ in 0..<300 where aborted == 0 {
            aborted = try await stats(server)["aborted"] as? Int ?? 0
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(aborted == 1, "the server saw the transfer broken off")
        #expect(try await http.send(HTTPRequest(method: "GET", url: server.url + "/slow?ms=0")).status == 200)
    }
}
