import Crypto

/// Appends fields to a byte buffer: LEB128 varints, big-endian fixed integers, length-prefixed strings.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
    mutating func varint(_ value: Int) { varint(UInt64(max(0, value))) }
    mutating func byte(_ value: UInt8) { bytes.append(value) }
    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }
    mutating func string(_ value: String) {
        let utf8 = Array(value.utf8)
        varint(utf8.count)
        bytes.append(contentsOf: utf8)
    }
    mutating func optionalString(_ value: String?) {
        bool(value != nil)
        if let value { string(value) }
    }
    mutating func bigEndian(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }
    mutating func bigEndian(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}

/// Reads what ``ByteWriter`` wrote; every read throws on truncated or malformed input.
struct ByteReader {
    struct Truncated: Error {}
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { index >= bytes.count }

    mutating func byte() throws -> UInt8 {
        guard index < bytes.count else { throw Truncated() }
        defer { index += 1 }
        return bytes[index]
    }
    mutating func bool() throws -> Bool { try byte() != 0 }
    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            guard shift < 64 else { throw Truncated() }
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }
    mutating func int() throws -> Int {
        let v = try varint()
        guard v <= UInt64(Int.max) else { throw Truncated() }
        return Int(v)
    }
    mutating func string() throws -> String {
        let n = try int()
        guard n <= bytes.count - index else { throw Truncated() }
        defer { index += n }
        return String(decoding: bytes[index..<index + n], as: UTF8.self)
    }
    mutating func optionalString() throws -> String? { try bool() ? try string() : nil }
    mutating func bigEndian64() throws -> UInt64 {
        var v: UInt64 = 0
        for _ in 0..<8 { v = v << 8 | UInt64(try byte()) }
        return v
    }
    mutating func bigEndian32() throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 { v = v << 8 | UInt32(try byte()) }
        return v
    }
}

/// Builds LMDB keys from identity parts.
///
/// LMDB keys are at most 511 bytes, while an S3 key alone may be 1 024. Parts are joined with
/// a NUL byte (which no S3 key, bucket, etag or SQS message id contains); a key longer than
/// ``limit`` keeps its first bytes (so related keys still sort together) and ends with the
/// SHA-256 of the whole, so distinct identities never share a key. The full identity is always
/// stored in the value as well.
enum KeyBuilder {
    static let limit = 480
    static let keptPrefix = limit - 1 - SHA256.byteCount

    static func key(_ parts: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (i, part) in parts.enumerated() {
            if i > 0 { bytes.append(0) }
            bytes.append(contentsOf: part.utf8)
        }
        guard bytes.count > limit else { return bytes }
        let digest = SHA256.hash(data: bytes)
        var short = Array(bytes[..<keptPrefix])
        short.append(0xff)
        short.append(contentsOf: digest)
        return short
    }

    static func printable(_ key: [UInt8]) -> String {
        String(decoding: key.map { $0 == 0 ? UInt8(ascii: "/") : $0 }.prefix(200), as: UTF8.self)
    }
}
