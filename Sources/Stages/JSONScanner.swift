/// A strict RFC 8259 JSON scanner over a contiguous buffer: it validates one value (strings, escapes,
/// UTF-8, numbers, literals, nesting) and reports where it ends, without building anything.
///
/// It is stateless: when the buffer ends inside the value it answers `needMore`, and the caller scans
/// again from the value's start once more bytes are buffered (the record splitter doubles what it
/// waits for each time, so rescanning costs O(n) overall).
struct JSONScanner {
    enum Outcome: Equatable {
        /// The value ends at this index (exclusive).
        case complete(Int)
        /// The buffer ended inside the value.
        case needMore
        /// Invalid JSON at this index.
        case invalid(Int, String)
    }

    /// Spans (start, end) of the string values of two top-level keys of an object value.
    struct Fields {
        var eventTime: Range<Int>?
        var eventID: Range<Int>?
    }

    let maxDepth: Int
    private var stack: [Bool]  // true: object, false: array

    init(maxDepth: Int = 512) {
        self.maxDepth = maxDepth
        stack = []
        stack.reserveCapacity(64)
    }

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0a || b == 0x0d || b == 0x09 }

    /// Skips whitespace from `i`; returns the index of the first other byte (may be `n`).
    @inline(__always) static func skipSpace(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int) -> Int {
        var i = i
        while i < n && isSpace(p[i]) { i += 1 }
        return i
    }

    /// Scans the value starting at `start` (no leading whitespace). When `fields` is given and the
    /// value is an object, records the spans of its top-level `eventTime` and `eventID` strings
    /// (contents, without quotes).
    mutating func scanValue(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int, fields: UnsafeMutablePointer<Fields>?) -> Outcome {
        stack.removeAll(keepingCapacity: true)
        var i = start
        // What the key just scanned at depth 1 names: 0 none, 1 eventTime, 2 eventID.
        var pendingField = 0
        while true {
            // Expecting a value at i.
            i = JSONScanner.skipSpace(p, n, i)
            guard i < n else { return .needMore }
            let c = p[i]
            switch c {
            case UInt8(ascii: "{"):
                guard stack.count < maxDepth else { return .invalid(i, "nesting deeper than \(maxDepth)") }
                stack.append(true)
                i = JSONScanner.skipSpace(p, n, i + 1)
                guard i < n else { return .needMore }
                if p[i] == UInt8(ascii: "}") {
                    stack.removeLast()
                    i += 1
                } else {
                    switch scanKey(p, n, &i, fields != nil && stack.count == 1) {
                    case .complete(let f): pendingField = f
                    case .needMore: return .needMore
                    case .invalid(let at, let why): return .invalid(at, why)
                    }
                    continue
                }
            case UInt8(ascii: "["):
                guard stack.count < maxDepth else { return .invalid(i, "nesting deeper than \(maxDepth)") }
                stack.append(false)
                i = JSONScanner.skipSpace(p, n, i + 1)
                guard i < n else { return .needMore }
                if p[i] == UInt8(ascii: "]") {
                    stack.removeLast()
                    i += 1
                } else {
                    continue
                }
            case UInt8(ascii: "\""):
                let s = i + 1
                switch JSONScanner.scanString(p, n, s) {
                case .complete(let e):
                    if pendingField != 0, let fields {
                        if pendingField == 1 { fields.pointee.eventTime = s..<(e - 1) } else { fields.pointee.eventID = s..<(e - 1) }
                    }
                    i = e
                case let other: return other
                }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                switch JSONScanner.scanNumber(p, n, i) {
                case .complete(let e): i = e
                case let other: return other
                }
            case UInt8(ascii: "t"):
                switch JSONScanner.literal(p, n, i, "true") {
                case .complete(let e): i = e
                case let other: return other
                }
            case UInt8(ascii: "f"):
                switch JSONScanner.literal(p, n, i, "false") {
                case .complete(let e): i = e
                case let other: return other
                }
            case UInt8(ascii: "n"):
                switch JSONScanner.literal(p, n, i, "null") {
                case .complete(let e): i = e
                case let other: return other
                }
            default:
                return .invalid(i, "unexpected \(JSONScanner.describe(c)) where a value was expected")
            }
            pendingField = 0
            // After a value: close containers or move to the next element.
            while true {
                guard let inObject = stack.last else { return .complete(i) }
                i = JSONScanner.skipSpace(p, n, i)
                guard i < n else { return .needMore }
                let d = p[i]
                if d == UInt8(ascii: ",") {
                    i += 1
                    if inObject {
                        i = JSONScanner.skipSpace(p, n, i)
                        guard i < n else { return .needMore }
                        switch scanKey(p, n, &i, fields != nil && stack.count == 1) {
                        case .complete(let f): pendingField = f
                        case .needMore: return .needMore
                        case .invalid(let at, let why): return .invalid(at, why)
                        }
                    }
                    break
                }
                if inObject && d == UInt8(ascii: "}") || !inObject && d == UInt8(ascii: "]") {
                    stack.removeLast()
                    i += 1
                    continue
                }
                return .invalid(
                    i, "unexpected \(JSONScanner.describe(d)) after a value in an \(inObject ? "object" : "array") "
                        + "(expected ',' or '\(inObject ? "}" : "]")')")
            }
        }
    }

    /// Scans `"key"` and the `:` after it at `i` (pointing at the key's quote); leaves `i` after the colon.
    /// Returns which watched field the key names (0 none, 1 eventTime, 2 eventID).
    @inline(__always)
    private func scanKey(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: inout Int, _ watch: Bool) -> Outcome {
        guard p[i] == UInt8(ascii: "\"") else { return .invalid(i, "expected a string key, found \(JSONScanner.describe(p[i]))") }
        let s = i + 1
        let e: Int
        switch JSONScanner.scanString(p, n, s) {
        case .complete(let end): e = end
        case let other: return other
        }
        var field = 0
        if watch {
            let len = e - 1 - s
            if len == 9 && JSONScanner.equals(p + s, "eventTime") { field = 1 }
            else if len == 7 && JSONScanner.equals(p + s, "eventID") { field = 2 }
        }
        i = JSONScanner.skipSpace(p, n, e)
        guard i < n else { return .needMore }
        guard p[i] == UInt8(ascii: ":") else { return .invalid(i, "expected ':' after an object key, found \(JSONScanner.describe(p[i]))") }
        i += 1
        return .complete(field)
    }

    @inline(__always) static func equals(_ p: UnsafePointer<UInt8>, _ s: StaticString) -> Bool {
        memcmp(p, s.utf8Start, s.utf8CodeUnitCount) == 0
    }

    /// Scans string contents from `i` (just after the opening quote); `.complete` is the index after the closing quote.
    static func scanString(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int) -> Outcome {
        var i = start
        while true {
            // Eight bytes at a time while none is a quote, a backslash, a control or a non-ASCII byte.
            while i + 8 <= n {
                let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let highs: UInt64 = 0x8080_8080_8080_8080
                let q = w ^ (ones &* 0x22)
                let b = w ^ (ones &* 0x5c)
                let special = ((q &- ones) & ~q) | ((b &- ones) & ~b) | ((w &- ones &* 0x20) & ~w) | w
                if special & highs != 0 { break }
                i += 8
            }
            guard i < n else { return .needMore }
            let c = p[i]
            if c == UInt8(ascii: "\"") { return .complete(i + 1) }
            if c == UInt8(ascii: "\\") {
                guard i + 1 < n else { return .needMore }
                switch p[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2
                case UInt8(ascii: "u"):
                    guard i + 6 <= n else { return .needMore }
                    for k in 2..<6 where !isHex(p[i + k]) {
                        return .invalid(i + k, "invalid \\u escape in a string")
                    }
                    i += 6
                default:
                    return .invalid(i + 1, "invalid escape \\\(describe(p[i + 1])) in a string")
                }
            } else if c < 0x20 {
                return .invalid(i, "unescaped control character \(describe(c)) in a string")
            } else if c < 0x80 {
                i += 1
            } else {
                switch utf8Sequence(p, n, i) {
                case .complete(let e): i = e
                case let other: return other
                }
            }
        }
    }

    @inline(__always) static func isHex(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x66)
    }

    /// Validates one multi-byte UTF-8 sequence at `i` (no overlongs, no surrogates, at most U+10FFFF).
    static func utf8Sequence(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int) -> Outcome {
        let c = p[i]
        let length: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xbf
        switch c {
        case 0xc2...0xdf: length = 2
        case 0xe0: length = 3; low = 0xa0
        case 0xe1...0xec, 0xee...0xef: length = 3
        case 0xed: length = 3; high = 0x9f
        case 0xf0: length = 4; low = 0x90
        case 0xf1...0xf3: length = 4
        case 0xf4: length = 4; high = 0x8f
        default: return .invalid(i, "invalid UTF-8 byte \(describe(c))")
        }
        guard i + length <= n else {
            // Validate what is there before asking for more.
            for k in 1..<(n - i) where p[i + k] & 0xc0 != 0x80 || (k == 1 && (p[i + 1] < low || p[i + 1] > high)) {
                return .invalid(i + k, "invalid UTF-8 continuation byte \(describe(p[i + k]))")
            }
            return .needMore
        }
        if p[i + 1] < low || p[i + 1] > high { return .invalid(i + 1, "invalid UTF-8 sequence") }
        for k in 2..<length where p[i + k] & 0xc0 != 0x80 {
            return .invalid(i + k, "invalid UTF-8 continuation byte \(describe(p[i + k]))")
        }
        return .complete(i + length)
    }

    /// Scans a number at `i`; a number that reaches the buffer's end needs more (it could continue).
    static func scanNumber(_ p: UnsafePointer<UInt8>, _ n: Int, _ start: Int) -> Outcome {
        var i = start
        @inline(__always) func digit(_ j: Int) -> Bool { j < n && p[j] >= 0x30 && p[j] <= 0x39 }
        if p[i] == UInt8(ascii: "-") { i += 1 }
        guard i < n else { return .needMore }
        if p[i] == UInt8(ascii: "0") {
            i += 1
        } else if digit(i) {
            while digit(i) { i += 1 }
        } else {
            return .invalid(i, "invalid number: expected a digit, found \(describe(p[i]))")
        }
        if i < n && p[i] == UInt8(ascii: ".") {
            i += 1
            guard i < n else { return .needMore }
            guard digit(i) else { return .invalid(i, "invalid number: expected a digit after '.'") }
            while digit(i) { i += 1 }
        }
        if i < n && (p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E")) {
            i += 1
            if i < n && (p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-")) { i += 1 }
            guard i < n else { return .needMore }
            guard digit(i) else { return .invalid(i, "invalid number: expected a digit in the exponent") }
            while digit(i) { i += 1 }
        }
        guard i < n else { return .needMore }
        if digit(i) { return .invalid(i, "invalid number: leading zero") }
        return .complete(i)
    }

    static func literal(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int, _ word: StaticString) -> Outcome {
        let len = word.utf8CodeUnitCount
        let available = min(len, n - i)
        if memcmp(p + i, word.utf8Start, available) != 0 {
            var k = 0
            while k < available && p[i + k] == word.utf8Start[k] { k += 1 }
            return .invalid(i + k, "invalid literal (expected '\(word)')")
        }
        return available < len ? .needMore : .complete(i + len)
    }

    static func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7f { return "'\(Character(UnicodeScalar(b)))'" }
        return "byte 0x" + String(b, radix: 16, uppercase: true).leftPadded(2)
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
