import Crypto
import Foundation

// The integrity ledger: what continuous log-file validation must remember between a log's fetch and
// the digest that lists it (an hour or more later), in the journal's `integrity` database.
//
//   "L" log id            → sha256(32) scope delivered(8) stored(8) bucket key   a fetched log awaiting its digest
//   "S" scope 0 delivered(8) sha256(log id) → log id                            the same, by scope and delivery time
//   "V" log id            → stored(8)                                           listed by a digest before it was fetched here
//   "D" digest id         → sha256(32) stored(8) signature valid(1)             a digest checked (its successor checks the link)
//   "C" name              → count(8)                                            findings by kind; verified digests and logs
//   "F" stored(8) digest(8) seq(4) → finding (JSON)                             the latest findings, for `journal status`
//   "K" region            → stored(8) then each page (varint length, bytes)     CloudTrail's public keys as ListPublicKeys gave them
//
// (log id, digest id: KeyBuilder's bucket 0 key.) Invariant 10 of Journal.swift holds here: a log's
// pending entry is written in the transaction of its `fetched` transition, and a digest's verdict — its
// listed and not-covered logs leaving the ledger, its findings, its counts — in the transaction of the
// digest object's own `fetched` transition, whose body holds the same findings as records. A crash
// before that commit repeats the check from the same ledger; after it, the findings are records like any
// other (delivered once per output, replay bounded by the batch in flight). GC drops entries older than
// `integrityRetention`, so logs of a trail whose digests never come cannot fill the journal.

/// A fetched log's SHA-256 (of its uncompressed bytes), kept until a digest lists it.
public struct IntegrityLog: Sendable, Equatable {
    public var bucket: String
    public var key: String
    /// The trail scope its key names (prefix, organisation, account, region), as the caller spells it.
    public var scope: String
    /// When CloudTrail delivered it (its key's timestamp), ms since the epoch.
    public var delivered: Timestamp
    public var sha256: [UInt8]

    public init(bucket: String, key: String, scope: String, delivered: Timestamp, sha256: [UInt8]) {
        self.bucket = bucket
        self.key = key
        self.scope = scope
        self.delivered = delivered
        self.sha256 = sha256
    }
}

/// A digest this journal checked: what its successor's link is checked against.
public struct IntegrityDigestSeen: Sendable, Equatable {
    public var sha256: [UInt8]
    public var signature: String
    /// Whether it verified (an invalid one was reported when it was checked: its successor says no more).
    public var valid: Bool
    public init(sha256: [UInt8], signature: String, valid: Bool = true) {
        self.sha256 = sha256
        self.signature = signature
        self.valid = valid
    }
}

/// One digest's verdict, committed with the digest object's `fetched` transition.
public struct IntegrityVerdict: Sendable {
    public var bucket: String
    public var key: String
    /// The digest's own SHA-256, signature and validity, remembered for its successor (nil when it could
    /// not even be read).
    public var seen: IntegrityDigestSeen?
    /// Logs the digest listed with a matching hash: they leave the ledger (or are marked, when this
    /// instance has not fetched them yet, so their fetch adds nothing).
    public var verified: [(bucket: String, key: String)] = []
    /// Logs the digest listed that were modified or missing: they leave the ledger (their finding says
    /// it), or are marked like verified ones when not fetched here yet.
    public var settled: [(bucket: String, key: String)] = []
    /// Pending logs reported as listed by no digest: they leave the ledger.
    public var notCovered: [(bucket: String, key: String)] = []
    /// The findings, each with its kind (counted) and its JSON (kept among the latest).
    public var findings: [(kind: String, json: [UInt8])] = []

    public init(bucket: String, key: String) {
        self.bucket = bucket
        self.key = key
    }
}

/// The integrity ledger's part of a `fetched` transition.
public enum IntegrityCommit: Sendable {
    /// A log's hash, awaiting its digest.
    case log(IntegrityLog)
    /// A digest's verdict.
    case digest(IntegrityVerdict)
}

/// What `journal status` shows of integrity validation.
public struct IntegrityStatus: Sendable {
    /// `digests_verified`, `logs_verified`, and each finding kind.
    public var counts: [String: UInt64] = [:]
    /// Fetched logs awaiting their digest.
    public var pendingLogs = 0
    /// The latest findings (JSON), newest first.
    public var recent: [String] = []
}

extension Journal {
    /// How many findings `journal status` keeps.
    static let recentFindings = 200

    /// A fetched log's ledger entry (nil: not pending here).
    public func pendingLog(bucket: String, key: String) throws -> IntegrityLog? {
        try read { txn in
            guard let db = txn.dbs.integrity, let v = try txn.get(db, Ledger.logKey(bucket, key)) else { return nil }
            return try Ledger.decodeLog(v)
        }
    }

    /// Pending logs of `scope` delivered before `before`, oldest first, at most `limit`.
    public func pendingLogs(scope: String, deliveredBefore before: Timestamp, limit: Int = 10_000) throws -> [IntegrityLog] {
        try read { txn in
            guard let db = txn.dbs.integrity else { return [] }
            let prefix = Ledger.scopePrefix(scope)
            var ids: [[UInt8]] = []
            try txn.scan(db, from: prefix) { k, v in
                guard k.count >= prefix.count + 8, k.starts(with: prefix) else { return false }
                var r = ByteReader(Array(k[prefix.count..<prefix.count + 8]))
                guard Timestamp(bitPattern: try r.bigEndian64()) < before else { return false }
                ids.append(Array(v))
                return ids.count < limit
            }
            return try ids.compactMap { id in try txn.get(db, [UInt8(ascii: "L")] + id).map(Ledger.decodeLog) }
        }
    }

    /// A digest this journal checked (nil: never seen).
    public func digestSeen(bucket: String, key: String) throws -> IntegrityDigestSeen? {
        try read { txn in
            guard let db = txn.dbs.integrity, let v = try txn.get(db, [UInt8(ascii: "D")] + KeyBuilder.key([bucket, key])) else { return nil }
            var r = ByteReader(v)
            let sha = try (0..<32).map { _ in try r.byte() }
            _ = try r.bigEndian64()
            let signature = try r.string()
            return IntegrityDigestSeen(sha256: sha, signature: signature, valid: r.isAtEnd ? true : try r.bool())
        }
    }

    /// Counts, pending logs and the latest findings.
    public func integrityStatus() throws -> IntegrityStatus {
        try read { txn in
            var s = IntegrityStatus()
            guard let db = txn.dbs.integrity else { return s }
            try txn.scan(db, from: [UInt8(ascii: "C")]) { k, v in
                guard k.first == UInt8(ascii: "C") else { return false }
                var r = ByteReader(Array(v))
                s.counts[String(decoding: k.dropFirst(), as: UTF8.self)] = try r.bigEndian64()
                return true
            }
            try txn.scan(db, from: [UInt8(ascii: "F")]) { k, v in
                guard k.first == UInt8(ascii: "F") else { return false }
                s.recent.append(String(decoding: v, as: UTF8.self))
                return true
            }
            s.recent.reverse()
            try txn.scan(db, from: [UInt8(ascii: "L")]) { k, _ in
                guard k.first == UInt8(ascii: "L") else { return false }
                s.pendingLogs += 1
                return true
            }
            return s
        }
    }

    /// CloudTrail's public keys of `region` as last fetched (the raw `ListPublicKeys` pages) and when.
    public func cachedPublicKeys(region: String) throws -> (pages: [[UInt8]], stored: Timestamp)? {
        try read { txn in
            guard let db = txn.dbs.integrity, let v = try txn.get(db, [UInt8(ascii: "K")] + Array(region.utf8)) else { return nil }
            var r = ByteReader(v)
            let stored = Timestamp(bitPattern: try r.bigEndian64())
            var pages: [[UInt8]] = []
            while !r.isAtEnd { pages.append(Array(try r.string().utf8)) }
            return (pages, stored)
        }
    }

    /// Keeps `region`'s public keys (the raw `ListPublicKeys` pages), so a restart or a CloudTrail outage
    /// does not stop digests being checked.
    public func cachePublicKeys(region: String, pages: [[UInt8]]) async throws {
        try await write { txn in
            guard let db = txn.dbs.integrity else { return }
            var w = ByteWriter()
            w.bigEndian(UInt64(bitPattern: txn.clock()))
            for page in pages { w.string(String(decoding: page, as: UTF8.self)) }
            try txn.put(db, [UInt8(ascii: "K")] + Array(region.utf8), w.bytes)
        }
    }

    /// Drops ledger entries stored more than `integrityRetention` ago (at most `limit` per call);
    /// returns how many.
    public func collectIntegrity(limit: Int = 5000) async throws -> Int {
        let horizon = options.clock() - options.integrityRetention
        return try await write { txn in try Ledger.collect(txn, before: horizon, limit: limit) }
    }
}

enum Ledger {
    static func logID(_ bucket: String, _ key: String) -> [UInt8] { KeyBuilder.key([bucket, key]) }
    static func logKey(_ bucket: String, _ key: String) -> [UInt8] { [UInt8(ascii: "L")] + logID(bucket, key) }
    static func scopePrefix(_ scope: String) -> [UInt8] { [UInt8(ascii: "S")] + Array(scope.utf8.prefix(300)) + [0] }
    static func scopeKey(_ log: IntegrityLog) -> [UInt8] {
        var w = ByteWriter()
        w.bigEndian(UInt64(bitPattern: log.delivered))
        return scopePrefix(log.scope) + w.bytes + Array(SHA256.hash(data: logID(log.bucket, log.key)))
    }

    static func encodeLog(_ log: IntegrityLog, stored: Timestamp) -> [UInt8] {
        var w = ByteWriter()
        w.bytes += log.sha256.count == 32 ? log.sha256 : [UInt8](repeating: 0, count: 32)
        w.string(log.scope)
        w.bigEndian(UInt64(bitPattern: log.delivered))
        w.bigEndian(UInt64(bitPattern: stored))
        w.string(log.bucket)
        w.string(log.key)
        return w.bytes
    }

    static func decodeLog(_ v: [UInt8]) throws -> IntegrityLog {
        var r = ByteReader(v)
        let sha = try (0..<32).map { _ in try r.byte() }
        let scope = try r.string()
        let delivered = Timestamp(bitPattern: try r.bigEndian64())
        _ = try r.bigEndian64()
        return IntegrityLog(bucket: try r.string(), key: try r.string(), scope: scope, delivered: delivered, sha256: sha)
    }

    /// At a log's `fetched` transition: it awaits its digest, unless a digest listed it already.
    static func recordLog(_ txn: WriteContext, _ log: IntegrityLog) throws {
        guard let db = txn.dbs.integrity else { return }
        if try txn.get(db, [UInt8(ascii: "V")] + logID(log.bucket, log.key)) != nil { return }
        try txn.put(db, logKey(log.bucket, log.key), encodeLog(log, stored: txn.clock()))
        try txn.put(db, scopeKey(log), logID(log.bucket, log.key))
    }

    /// Removes a pending log; false when it was not pending.
    @discardableResult
    static func removeLog(_ txn: WriteContext, _ bucket: String, _ key: String) throws -> Bool {
        guard let db = txn.dbs.integrity, let v = try txn.get(db, logKey(bucket, key)) else { return false }
        let log = try decodeLog(v)
        _ = try txn.delete(db, logKey(bucket, key))
        _ = try txn.delete(db, scopeKey(log))
        return true
    }

    /// At a digest's `fetched` transition: its verdict.
    static func record(_ txn: WriteContext, _ verdict: IntegrityVerdict) throws {
        guard let db = txn.dbs.integrity else { return }
        let now = txn.clock()
        var stamp = ByteWriter()
        stamp.bigEndian(UInt64(bitPattern: now))
        // A listed log this journal has not fetched yet is marked: the digest has spoken of it, and its
        // fetch, when it comes, must not make it pending again (a second finding about it).
        for log in verdict.verified + verdict.settled where !(try removeLog(txn, log.bucket, log.key)) {
            try txn.put(db, [UInt8(ascii: "V")] + logID(log.bucket, log.key), stamp.bytes)
        }
        for log in verdict.notCovered { try removeLog(txn, log.bucket, log.key) }
        if let seen = verdict.seen {
            var w = ByteWriter()
            w.bytes += seen.sha256
            w.bigEndian(UInt64(bitPattern: now))
            w.string(seen.signature)
            w.bool(seen.valid)
            try txn.put(db, [UInt8(ascii: "D")] + KeyBuilder.key([verdict.bucket, verdict.key]), w.bytes)
            if seen.valid { try count(txn, "digests_verified", 1) }
        }
        try count(txn, "logs_verified", UInt64(verdict.verified.count))
        var seq: UInt32 = 0
        for f in verdict.findings {
            try count(txn, f.kind, 1)
            // Verdicts sharing a commit share its clock: the digest's id keeps their findings apart.
            var k = ByteWriter()
            k.byte(UInt8(ascii: "F"))
            k.bigEndian(UInt64(bitPattern: now))
            k.bytes += SHA256.hash(data: KeyBuilder.key([verdict.bucket, verdict.key])).prefix(8)
            k.bigEndian(seq)
            seq += 1
            try txn.put(db, k.bytes, f.json)
        }
        // Keep the latest findings only.
        var all: [[UInt8]] = []
        try txn.scan(db, from: [UInt8(ascii: "F")]) { k, _ in
            guard k.first == UInt8(ascii: "F") else { return false }
            all.append(Array(k))
            return true
        }
        for k in all.dropLast(Journal.recentFindings) { _ = try txn.delete(db, k) }
    }

    static func count(_ txn: WriteContext, _ name: String, _ n: UInt64) throws {
        guard let db = txn.dbs.integrity, n > 0 else { return }
        let key = [UInt8(ascii: "C")] + Array(name.utf8)
        var current: UInt64 = 0
        if let v = try txn.get(db, key) {
            var r = ByteReader(v)
            current = try r.bigEndian64()
        }
        var w = ByteWriter()
        w.bigEndian(current + n)
        try txn.put(db, key, w.bytes)
    }

    /// Drops L (with its S), V and D entries stored before `before`.
    static func collect(_ txn: WriteContext, before: Timestamp, limit: Int) throws -> Int {
        guard let db = txn.dbs.integrity else { return 0 }
        var expired: [(kind: UInt8, key: [UInt8], value: [UInt8])] = []
        for kind in [UInt8(ascii: "D"), UInt8(ascii: "L"), UInt8(ascii: "V")] {
            try txn.scan(db, from: [kind]) { k, v in
                guard k.first == kind, expired.count < limit else { return false }
                var r = ByteReader(Array(v))
                let stored: Timestamp
                switch kind {
                case UInt8(ascii: "L"): stored = try decodeLogStored(Array(v))
                case UInt8(ascii: "D"):
                    for _ in 0..<32 { _ = try r.byte() }
                    stored = Timestamp(bitPattern: try r.bigEndian64())
                default: stored = Timestamp(bitPattern: try r.bigEndian64())
                }
                if stored < before { expired.append((kind, Array(k), Array(v))) }
                return true
            }
        }
        for e in expired {
            if e.kind == UInt8(ascii: "L") { _ = try txn.delete(db, scopeKey(try decodeLog(e.value))) }
            _ = try txn.delete(db, e.key)
        }
        return expired.count
    }

    static func decodeLogStored(_ v: [UInt8]) throws -> Timestamp {
        var r = ByteReader(v)
        for _ in 0..<32 { _ = try r.byte() }
        _ = try r.string()
        _ = try r.bigEndian64()
        return Timestamp(bitPattern: try r.bigEndian64())
    }
}
