// Byte order of keys, as S3 lists them and as LMDB stores them: the local walk's sort
// (LocalWalk.precedes) and the journal's scans (compareKeys) against the plain comparison of UTF-8 bytes.

import Foundation
import TestSupport
import Testing

@testable import Engine
@testable import Journal

@Suite("Key order")
struct KeyOrderTests {
    /// Keys that share prefixes, one a prefix of another, non-ASCII (é, 日, an emoji) and empty ones.
    static func keys() -> [String] {
        var g = SplitMix64(seed: 2026)
        let alphabet: [String] = ["a", "b", "/", "_", "0", "9", "Z", "é", "日", "🙂", "~"]
        var keys = ["", "a", "a/", "AWSLogs/1/", "AWSLogs/1/x", "e", "é", "f"]
        for _ in 0..<300 {
            let n = Int(g.next() % 6)
            keys.append("AWSLogs/" + (0..<n).map { _ in alphabet[Int(g.next() % UInt64(alphabet.count))] }.joined())
        }
        return keys
    }

    @Test func theLocalWalkSortsByUTF8Bytes() {
        let keys = KeyOrderTests.keys()
        let reference = keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        #expect(keys.sorted(by: LocalWalk.precedes) == reference)
        #expect(!LocalWalk.precedes("a", "a") && LocalWalk.precedes("a", "a/") && LocalWalk.precedes("f", "é"), "é (0xC3…) sorts after f, unlike in String order")
    }

    @Test func journalKeysCompareByBytes() {
        let keys = KeyOrderTests.keys().map { Array($0.utf8) }
        for a in keys.prefix(60) {
            for b in keys.suffix(60) {
                let c = a.withUnsafeBytes { compareKeys($0, b) }
                let want = a == b ? 0 : (a.lexicographicallyPrecedes(b) ? -1 : 1)
                #expect(c.signum() == want, "\(a) vs \(b)")
            }
        }
    }

    @Test func anObjectKeyIsFoundByItsBytes() {
        let refs = KeyOrderTests.keys().map { ObjectRef(bucket: "b", key: $0, version: "") }
        let held = Set(refs.map(\.journalKey))
        #expect(held.count == Set(refs).count)
        for r in refs { #expect(held.contains(ObjectKey(bytes: r.storageKey))) }
        #expect(!held.contains(ObjectRef(bucket: "b", key: "not there").journalKey))
    }
}
