import Foundation
import Testing

@testable import Journal

/// The model: what the journal should hold, by a plain in-memory reading of its rules.
struct Model {
    struct Obj: Equatable {
        var stage: ObjectStage
        var size: UInt64?
        var recordCount: UInt64?
        var cursors: [String: UInt64] = [:]
        var attempts: UInt32 = 0
        var lastError: String?
        var messages: [String]
        var source: String
        var note: String?
        var firstSeen: Int64
        var body: [UInt8]?
    }
    struct Msg: Equatable {
        var handle: String
        var first: Int64
        var last: Int64
        var count: UInt32
        var objects: [ObjectRef]
        var state: MessageState.State
    }
    struct Quarantined: Equatable {
        var reason: String
        var attempts: UInt32
        var firstSeen: Int64
        var lastSeen: Int64
    }

    let outputs: [String]
    let retention: Int64
    var objects: [ObjectRef: Obj] = [:]
    var messages: [String: Msg] = [:]
    var done: [ObjectRef: Int64] = [:]
    var quarantine: [String: Quarantined] = [:]  // "o:<ref>" or "m:<id>"
    var cursors: [String: BackfillCursor] = [:]

    static func isFinal(_ s: ObjectStage) -> Bool { s == .done || s == .quarantined }

    mutating func refresh(_ id: String) {
        guard var m = messages[id], m.state == .received else { return }
        for ref in m.objects {
            if let o = objects[ref], !Model.isFinal(o.stage) { return }
        }
        m.state = .complete
        messages[id] = m
    }

    mutating func finish(_ ref: ObjectRef, now: Int64) {
        let o = objects[ref]!
        if o.stage == .done { done[ref] = now }
        for id in o.messages { refresh(id) }
    }

    mutating func receive(_ m: ReceivedMessage, now: Int64) -> [ObjectRef: ObjectDisposition] {
        var msg = messages[m.id] ?? Msg(handle: m.receiptHandle, first: now, last: now, count: m.receiveCount, objects: [], state: .received)
        msg.handle = m.receiptHandle
        msg.last = now
        msg.count = max(msg.count, m.receiveCount)
        var d: [ObjectRef: ObjectDisposition] = [:]
        if msg.state != .quarantined {
            for o in m.objects {
                if !msg.objects.contains(o.ref) { msg.objects.append(o.ref) }
                if var obj = objects[o.ref] {
                    if !obj.messages.contains(m.id) { obj.messages.append(m.id) }
                    objects[o.ref] = obj
                    switch obj.stage {
                    case .done: d[o.ref] = .alreadyDone(finishedAt: -1)
                    case .quarantined: d[o.ref] = .quarantined
                    default: d[o.ref] = .inProgress(obj.stage)
                    }
                } else if let at = done[o.ref] {
                    d[o.ref] = .alreadyDone(finishedAt: at)
                } else {
                    objects[o.ref] = Obj(stage: .received, size: o.size, messages: [m.id], source: "sqs", firstSeen: now)
                    d[o.ref] = .new
                }
            }
        }
        messages[m.id] = msg
        refresh(m.id)
        return d
    }

    mutating func quarantineMessage(_ id: String, _ handle: String, _ count: UInt32, _ reason: String, now: Int64) {
        var msg = messages[id] ?? Msg(handle: handle, first: now, last: now, count: count, objects: [], state: .quarantined)
        msg.handle = handle
        msg.last = now
        msg.count = max(msg.count, count)
        msg.state = .quarantined
        messages[id] = msg
        let first = quarantine["m:\(id)"]?.firstSeen ?? now
        quarantine["m:\(id)"] = Quarantined(reason: reason, attempts: count, firstSeen: first, lastSeen: now)
    }

    /// nil: the transition must be refused.
    mutating func settle(_ ref: ObjectRef, now: Int64) {
        let o = objects[ref]!
        let total = o.recordCount ?? 0
        if outputs.allSatisfy({ (o.cursors[$0] ?? 0) >= total }) {
            objects[ref]!.stage = .done
            finish(ref, now: now)
        }
    }

    mutating func ack(_ ref: ObjectRef, _ output: String, _ count: UInt64, now: Int64) -> Bool {
        guard var o = objects[ref] else { return false }
        if o.stage == .done { return true }
        guard o.stage == .fetched || o.stage == .emitting, let total = o.recordCount, count <= total else { return false }
        guard count > (o.cursors[output] ?? 0) else { return true }
        o.cursors[output] = count
        o.stage = .emitting
        objects[ref] = o
        settle(ref, now: now)
        return true
    }

    mutating func complete(_ ref: ObjectRef, _ note: String, now: Int64) -> Bool {
        guard var o = objects[ref] else { return false }
        if o.stage == .done { return true }
        guard o.stage != .quarantined else { return false }
        o.stage = .done
        o.note = note
        if o.recordCount == nil { o.recordCount = 0 }
        objects[ref] = o
        finish(ref, now: now)
        return true
    }

    mutating func quarantineObject(_ ref: ObjectRef, _ reason: String, now: Int64) -> Bool {
        guard var o = objects[ref], !Model.isFinal(o.stage) else { return false }
        o.stage = .quarantined
        o.lastError = reason
        objects[ref] = o
        let first = quarantine["o:\(ref)"]?.firstSeen ?? now
        quarantine["o:\(ref)"] = Quarantined(reason: reason, attempts: o.attempts, firstSeen: first, lastSeen: now)
        finish(ref, now: now)
        return true
    }

    mutating func deleteMessage(_ id: String) {
        guard let m = messages.removeValue(forKey: id) else { return }
        for ref in m.objects {
            objects[ref]?.messages.removeAll { $0 == id }
        }
    }

    mutating func gc(now: Int64) {
        for (ref, o) in objects where Model.isFinal(o.stage) && o.messages.isEmpty {
            objects[ref] = nil
        }
        for (ref, at) in done where at < now - retention { done[ref] = nil }
    }
}

@Suite("Journal against an in-memory model")
struct ModelTests {
    @Test(arguments: [UInt64(1), 2, 3])
    func randomOperations(seed: UInt64) async throws {
        let dir = TempDir("model")
        let clock = ManualClock()
        var options = Journal.Options()
        options.outputs = ["es", "file"]
        options.bodyChunkSize = 1024
        options.initialMapSize = 1 << 20
        options.doneRetention = 400
        options.clock = { clock.now }
        var journal = try Journal(path: dir.path, options: options)
        var model = Model(outputs: options.outputs, retention: options.doneRetention)
        var rng = SplitMix64(seed: seed)
        let refs = (0..<24).map { ObjectRef(bucket: "bkt", key: "AWSLogs/1/CloudTrail/k\($0).json.gz", version: "e\($0 % 5)") }
        let messageIDs = (0..<16).map { "msg-\($0)" }
        var gcRuns = 0, reopens = 0, refusals = 0, finished = 0
        let steps = 1500

        for step in 0..<steps {
            clock.advance(Int64.random(in: 1...20, using: &rng))
            let now = clock.now
            let roll = Int.random(in: 0..<100, using: &rng)
            let context = "seed \(seed) step \(step) roll \(roll)"
            switch roll {
            case 0..<20:  // receive (possibly a redelivery, possibly naming known objects)
                let id = messageIDs.randomElement(using: &rng)!
                let objs = (0..<Int.random(in: 0...3, using: &rng)).map { _ in
                    DiscoveredObject(refs.randomElement(using: &rng)!, size: UInt64.random(in: 1...9999, using: &rng))
                }
                var unique: [DiscoveredObject] = []
                for o in objs where !unique.contains(where: { $0.ref == o.ref }) { unique.append(o) }
                let m = ReceivedMessage(id: id, receiptHandle: "h\(step)", receiveCount: UInt32.random(in: 1...5, using: &rng), objects: unique)
                let expected = model.receive(m, now: now)
                let got = try await journal.receive(m)
                for (ref, d) in expected {
                    if case .alreadyDone(let at) = d, at == -1 {
                        guard case .alreadyDone = got.objects[ref] else { Issue.record("\(context): \(ref) should be done"); continue }
                    } else {
                        #expect(got.objects[ref] == d, "\(context): disposition of \(ref)")
                    }
                }
                #expect(got.objects.count == expected.count, "\(context)")
            case 20..<23:
                let id = messageIDs.randomElement(using: &rng)!
                model.quarantineMessage(id, "hq\(step)", 7, "unrecognised message \(step)", now: now)
                _ = try await journal.quarantineMessage(id: id, receiptHandle: "hq\(step)", receiveCount: 7, reason: "unrecognised message \(step)", detail: "x")
            case 23..<38:  // fetch a received object (or try an invalid one)
                let ref = refs.randomElement(using: &rng)!
                let valid = model.objects[ref]?.stage == .received
                if !valid {
                    await #expect(throws: JournalError.self, "\(context)") { _ = try await journal.startFetch(ref) }
                    refusals += 1
                    break
                }
                let ticket = try await journal.startFetch(ref)
                model.objects[ref]!.attempts += 1
                let body = (0..<Int.random(in: 0...5000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let writer = journal.bodyWriter(ticket)
                var offset = 0
                while offset < body.count {
                    let n = min(body.count - offset, Int.random(in: 1...1500, using: &rng))
                    try await writer.append(body[offset..<offset + n])
                    offset += n
                }
                if Int.random(in: 0..<5, using: &rng) == 0 {
                    _ = try await journal.fetchFailed(ticket, error: "connection reset \(step)")
                    model.objects[ref]!.lastError = "connection reset \(step)"
                } else {
                    let count = UInt64.random(in: 0...6, using: &rng)
                    _ = try await writer.finish(recordCount: count)
                    model.objects[ref]!.stage = .fetched
                    model.objects[ref]!.recordCount = count
                    model.objects[ref]!.size = UInt64(body.count)
                    model.objects[ref]!.body = body
                    model.objects[ref]!.lastError = nil
                    model.settle(ref, now: now)
                }
            case 38..<60:  // acknowledge
                let ref = refs.randomElement(using: &rng)!
                let output = options.outputs.randomElement(using: &rng)!
                let count = UInt64.random(in: 0...7, using: &rng)
                let snapshot = model
                if model.ack(ref, output, count, now: now) {
                    let state = try await journal.acknowledge(Acknowledgement(object: ref, output: output, count: count))
                    #expect(state.stage == model.objects[ref]!.stage, "\(context)")
                } else {
                    model = snapshot
                    await #expect(throws: JournalError.self, "\(context)") {
                        _ = try await journal.acknowledge(Acknowledgement(object: ref, output: output, count: count))
                    }
                    refusals += 1
                }
            case 60..<64:
                let ref = refs.randomElement(using: &rng)!
                let snapshot = model
                if model.complete(ref, "digest", now: now) {
                    _ = try await journal.complete(ref, note: "digest")
                } else {
                    model = snapshot
                    await #expect(throws: JournalError.self, "\(context)") { _ = try await journal.complete(ref, note: "digest") }
                    refusals += 1
                }
            case 64..<68:
                let ref = refs.randomElement(using: &rng)!
                let snapshot = model
                if model.quarantineObject(ref, "corrupt gzip at byte \(step)", now: now) {
                    _ = try await journal.quarantineObject(ref, reason: "corrupt gzip at byte \(step)")
                } else {
                    model = snapshot
                    await #expect(throws: JournalError.self, "\(context)") { _ = try await journal.quarantineObject(ref, reason: "r") }
                    refusals += 1
                }
            case 68..<80:  // delete finished messages (and sometimes an unknown one)
                let ready = model.messages.filter { $0.value.state != .received }.map(\.key).sorted()
                var ids = Array(ready.shuffled(using: &rng).prefix(Int.random(in: 1...3, using: &rng)))
                if Int.random(in: 0..<4, using: &rng) == 0 { ids.append("never-seen") }
                for id in ids { model.deleteMessage(id) }
                try await journal.messagesDeleted(ids)
            case 80..<88:  // GC until nothing is left
                model.gc(now: now)
                var passes = 0
                while try await journal.collectGarbage(maxChunks: 3).moreWork { passes += 1; #expect(passes < 10_000) }
                gcRuns += 1
            case 88..<94:  // a backfill listing page
                let job = "job\(Int.random(in: 0..<2, using: &rng))"
                let found = (0..<Int.random(in: 0...3, using: &rng)).map { _ in DiscoveredObject(refs.randomElement(using: &rng)!, size: 10) }
                var unique: [DiscoveredObject] = []
                for o in found where !unique.contains(where: { $0.ref == o.ref }) { unique.append(o) }
                var expected = ListingResult()
                for d in unique {
                    if model.objects[d.ref] != nil { expected.inProgress += 1 }
                    else if model.done[d.ref] != nil { expected.alreadyDone += 1 }
                    else {
                        model.objects[d.ref] = Model.Obj(stage: .received, size: 10, messages: [], source: "backfill:\(job)", firstSeen: now)
                        expected.new += 1
                    }
                }
                let cursor = BackfillCursor(job: job, partition: "AWSLogs/1/", lastKey: unique.last?.ref.key, listed: UInt64(step), complete: false, updated: now)
                model.cursors[job] = cursor
                let got = try await journal.saveListing(cursor, discovered: unique)
                #expect(got == expected, "\(context)")
            default:  // reopen
                journal.close()
                journal = try Journal(path: dir.path, options: options)
                reopens += 1
            }
            try compare(journal, model, context)
            finished = max(finished, model.done.count)
        }
        // The run must have exercised every path, or the comparison proves little.
        #expect(gcRuns > 20 && reopens > 20 && refusals > 20 && finished > 0, "gc \(gcRuns) reopen \(reopens) refused \(refusals) done \(finished)")
        journal.close()
    }

    func compare(_ journal: Journal, _ model: Model, _ context: String) throws {
        let objects = try journal.objects()
        #expect(objects.count == model.objects.count, "\(context): object count")
        // The stage-filtered reads (which peek at the stage without decoding) agree with the model.
        for stages: Set<ObjectStage> in [[.received], [.fetched, .emitting], [.done, .quarantined], Set(ObjectStage.allCases)] {
            let expected = model.objects.filter { stages.contains($0.value.stage) }
            #expect(try journal.countObjects(in: stages) == expected.count, "\(context): count in \(stages)")
            #expect(Set(try journal.objects(in: stages).map(\.ref)) == Set(expected.keys), "\(context): objects in \(stages)")
            let first = try journal.firstObject(in: stages) { _ in true }
            #expect(first?.ref == expected.keys.min(by: { $0.storageKey.lexicographicallyPrecedes($1.storageKey) }), "\(context): first in \(stages)")
            var passed = 0
            let second = try journal.firstObject(in: stages) { _ in
                passed += 1
                return passed == 2
            }
            #expect((second == nil) == (expected.count < 2) && passed == min(2, expected.count), "\(context): the scan stops at the accepted one")
        }
        var chunks = 0
        for o in objects {
            guard let m = model.objects[o.ref] else {
                Issue.record("\(context): unexpected object \(o.ref) in \(o.stage)")
                continue
            }
            #expect(o.stage == m.stage, "\(context): stage of \(o.ref)")
            #expect(o.recordCount == m.recordCount, "\(context): count of \(o.ref)")
            #expect(o.cursors.filter { $0.value > 0 } == m.cursors.filter { $0.value > 0 }, "\(context): cursors of \(o.ref)")
            #expect(o.attempts == m.attempts, "\(context): attempts of \(o.ref)")
            #expect(o.lastError == m.lastError, "\(context): error of \(o.ref)")
            #expect(o.messages == m.messages, "\(context): messages of \(o.ref)")
            #expect(o.source == m.source && o.note == m.note && o.firstSeen == m.firstSeen, "\(context): \(o.ref)")
            #expect(o.size == m.size, "\(context): size of \(o.ref)")
            if let body = m.body {
                let stored = try #require(o.body, "\(context): body of \(o.ref)")
                chunks += Int(stored.chunks)
                #expect(try readAllBody(journal, stored) == body, "\(context): body bytes of \(o.ref)")
            } else {
                #expect(o.body == nil, "\(context)")
            }
        }
        let messages = try journal.messages()
        #expect(messages.count == model.messages.count, "\(context): message count")
        for msg in messages {
            guard let m = model.messages[msg.id] else {
                Issue.record("\(context): unexpected message \(msg.id)")
                continue
            }
            #expect(msg.receiptHandle == m.handle && msg.receiveCount == m.count, "\(context): \(msg.id)")
            #expect(msg.firstReceived == m.first && msg.lastReceived == m.last, "\(context): \(msg.id) times")
            #expect(msg.objects == m.objects && msg.state == m.state, "\(context): \(msg.id) objects/state")
        }
        for (ref, at) in model.done {
            #expect(try journal.doneMarker(ref) == at, "\(context): done marker of \(ref)")
        }
        let quarantine = try journal.quarantine()
        #expect(quarantine.count == model.quarantine.count, "\(context): quarantine size")
        for q in quarantine {
            let key = q.kind == .object ? "o:\(q.object!)" : "m:\(q.messageID!)"
            let m = try #require(model.quarantine[key], "\(context): unexpected quarantine \(key)")
            #expect(q.reason == m.reason && q.attempts == m.attempts, "\(context): \(key)")
            #expect(q.firstSeen == m.firstSeen && q.lastSeen == m.lastSeen, "\(context): \(key) times")
        }
        #expect(try journal.cursors().count == model.cursors.count, "\(context)")
        for c in try journal.cursors() { #expect(c == model.cursors[c.job], "\(context): cursor \(c.job)") }
        let status = try journal.status()
        for stage in ObjectStage.allCases {
            #expect((status.objectsByStage[stage] ?? 0) == model.objects.values.filter { $0.stage == stage }.count, "\(context): \(stage)")
        }
        for state in MessageState.State.allCases {
            #expect((status.messagesByState[state] ?? 0) == model.messages.values.filter { $0.state == state }.count, "\(context)")
        }
        #expect(status.doneMarkers == model.done.count, "\(context): done markers")
        #expect(status.storedBodyBytes == model.objects.values.reduce(0) { $0 + UInt64($1.body?.count ?? 0) }, "\(context)")
        // Bodies awaiting GC may hold more chunks; never fewer than the live ones.
        #expect(status.bodyChunks >= chunks, "\(context): body chunks")
        if status.bodiesAwaitingGC == 0 && !model.objects.values.contains(where: { Model.isFinal($0.stage) && $0.messages.isEmpty }) {
            #expect(status.bodyChunks == chunks, "\(context): body chunks after GC")
        }
    }
}
