#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// RecordTree: one record's JSON as a flat list of nodes pointing into its bytes, for the codecs and the
// filters, which read a dozen fields of every record and copy most of them verbatim.
//
// Invariants:
// 1. Nothing is copied or unescaped while parsing: a node is a kind and a byte range of the record
//    (strings: the contents between the quotes, still escaped; containers: from the opening bracket to
//    the closing one, inclusive; numbers and literals: their text). Readers unescape on demand.
// 2. Nodes are in document order; a container's children follow it, and `next` is the index just past
//    its whole subtree, so a sibling walk skips a subtree in one step. An object's children alternate
//    key (a string node) and value.
// 3. The parser trusts nothing: the splitter has validated records, but a tree may be built from any
//    bytes (tests, fuzzing, rewritten records), so every read is bounds-checked and malformed input
//    makes `parse` return false, never trap. Depth is limited like the splitter's.
// 4. One tree is reused record after record (its node storage keeps its capacity), so a codec allocates
//    nothing per record for parsing.

/// A parsed record: see the invariants at the top of this file.
public struct RecordTree {
    public enum Kind: UInt8, Sendable {
        case object, array, string, number, `true`, `false`, null
    }

    public struct Node: Sendable {
        public var kind: Kind
        /// For strings: whether the contents hold a backslash escape.
        public var escaped: Bool
        public var start: Int32
        public var end: Int32
        /// The index just past this node's subtree.
        public var next: Int32
    }

    public private(set) var nodes: [Node] = []
    /// The bytes the nodes point into; valid only while the record's bytes are (during the callback).
    public private(set) var bytes = UnsafeRawBufferPointer(start: nil, count: 0)
    private var stack: [Int32] = []
    let maxDepth: Int

    public init(maxDepth: Int = 512) {
        self.maxDepth = maxDepth
        nodes.reserveCapacity(256)
        stack.reserveCapacity(32)
    }

    /// The root node's index (0) when a parse succeeded.
    public static let root = 0

    /// Parses `bytes` (one JSON value, surrounding whitespace allowed). Returns false when they are not
    /// one well-formed value; the tree is then empty.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> Bool {
        nodes.removeAll(keepingCapacity: true)
        stack.removeAll(keepingCapacity: true)
        self.bytes = bytes
        guard let base = bytes.baseAddress, bytes.count < Int(Int32.max) else { return fail() }
        let p = base.assumingMemoryBound(to: UInt8.self)
        let n = bytes.count
        var i = JSONScanner.skipSpace(p, n, 0)
        // Whether the next token must be a key (inside an object, after '{' or ',').
        var expectKey = false
        while true {
            guard i < n else { return fail() }
            let c = p[i]
            if expectKey {
                guard c == UInt8(ascii: "\""), let e = string(p, n, i) else { return fail() }
                nodes.append(Node(kind: .string, escaped: e.escaped, start: Int32(i + 1), end: Int32(e.end - 1), next: Int32(nodes.count + 1)))
                i = JSONScanner.skipSpace(p, n, e.end)
                guard i < n, p[i] == UInt8(ascii: ":") else { return fail() }
                i = JSONScanner.skipSpace(p, n, i + 1)
                expectKey = false
                continue
            }
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard stack.count < maxDepth else { return fail() }
                let isObject = c == UInt8(ascii: "{")
                stack.append(Int32(nodes.count))
                nodes.append(Node(kind: isObject ? .object : .array, escaped: false, start: Int32(i), end: 0, next: 0))
                i = JSONScanner.skipSpace(p, n, i + 1)
                guard i < n else { return fail() }
                if p[i] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    closeContainer(at: i)
                    i += 1
                } else {
                    expectKey = isObject
                    continue
                }
            case UInt8(ascii: "\""):
                guard let e = string(p, n, i) else { return fail() }
                nodes.append(Node(kind: .string, escaped: e.escaped, start: Int32(i + 1), end: Int32(e.end - 1), next: Int32(nodes.count + 1)))
                i = e.end
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                var j = i + 1
                while j < n, Self.isNumberByte(p[j]) { j += 1 }
                nodes.append(Node(kind: .number, escaped: false, start: Int32(i), end: Int32(j), next: Int32(nodes.count + 1)))
                i = j
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                let (word, kind): (StaticString, Kind) = c == UInt8(ascii: "t") ? ("true", .true) : c == UInt8(ascii: "f") ? ("false", .false) : ("null", .null)
                let len = word.utf8CodeUnitCount
                guard i + len <= n, JSONScanner.equals(p + i, word) else { return fail() }
                nodes.append(Node(kind: kind, escaped: false, start: Int32(i), end: Int32(i + len), next: Int32(nodes.count + 1)))
                i += len
            default:
                return fail()
            }
            // After a value: close containers or move on to the next member.
            while true {
                i = JSONScanner.skipSpace(p, n, i)
                guard let top = stack.last else {
                    return i == n ? true : fail()
                }
                guard i < n else { return fail() }
                let isObject = nodes[Int(top)].kind == .object
                if p[i] == UInt8(ascii: ",") {
                    i = JSONScanner.skipSpace(p, n, i + 1)
                    expectKey = isObject
                    break
                }
                guard p[i] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) else { return fail() }
                closeContainer(at: i)
                i += 1
            }
        }
    }

    private mutating func closeContainer(at i: Int) {
        let top = Int(stack.removeLast())
        nodes[top].end = Int32(i + 1)
        nodes[top].next = Int32(nodes.count)
    }

    private mutating func fail() -> Bool {
        nodes.removeAll(keepingCapacity: true)
        return false
    }

    @inline(__always) static func isNumberByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
            || b == UInt8(ascii: "+") || b == UInt8(ascii: "-")
    }

    /// The end (after the closing quote) of the string whose opening quote is at `i`.
    private func string(_ p: UnsafePointer<UInt8>, _ n: Int, _ i: Int) -> (end: Int, escaped: Bool)? {
        var j = i + 1
        var escaped = false
        while j < n {
            // Eight bytes at a time while none is a quote or a backslash.
            while j + 8 <= n {
                let w = UnsafeRawPointer(p + j).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                let q = w ^ (ones &* 0x22), b = w ^ (ones &* 0x5c)
                if (((q &- ones) & ~q) | ((b &- ones) & ~b)) & highs != 0 { break }
                j += 8
            }
            guard j < n else { return nil }
            let b = p[j]
            if b == UInt8(ascii: "\"") { return (j + 1, escaped) }
            if b == UInt8(ascii: "\\") {
                escaped = true
                j += 2
            } else {
                j += 1
            }
        }
        return nil
    }

    // MARK: Reading

    /// The value of member `name` of the object at `node`, or nil (not an object, or no such member).
    public func member(_ node: Int, _ name: StaticString) -> Int? {
        guard node >= 0, node < nodes.count, nodes[node].kind == .object else { return nil }
        let len = name.utf8CodeUnitCount
        var k = node + 1
        let end = Int(nodes[node].next)
        while k + 1 < end {
            let key = nodes[k]
            if Int(key.end - key.start) == len, !key.escaped,
                memcmp(bytes.baseAddress! + Int(key.start), name.utf8Start, len) == 0
            {
                return k + 1
            }
            k = Int(nodes[k + 1].next)
        }
        return nil
    }

    /// The value of member `name` (a runtime string) of the object at `node`.
    public func member(_ node: Int, named name: String) -> Int? {
        guard node >= 0, node < nodes.count, nodes[node].kind == .object else { return nil }
        var name = name
        return name.withUTF8 { want in
            var k = node + 1
            let end = Int(nodes[node].next)
            while k + 1 < end {
                let key = nodes[k]
                if key.escaped ? string(k) == String(decoding: want, as: UTF8.self)
                    : Int(key.end - key.start) == want.count
                        && (want.isEmpty || memcmp(bytes.baseAddress! + Int(key.start), want.baseAddress!, want.count) == 0)
                {
                    return k + 1
                }
                k = Int(nodes[k + 1].next)
            }
            return nil
        }
    }

    /// Follows a path of member names from `node` (`["userIdentity", "sessionContext", "attributes"]`).
    public func path(_ node: Int, _ names: [String]) -> Int? {
        var at = node
        for name in names {
            guard let next = member(at, named: name) else { return nil }
            at = next
        }
        return at
    }

    /// The members of the object at `node`, as (key node, value node) pairs, in order.
    public func members(_ node: Int) -> [(key: Int, value: Int)] {
        guard node >= 0, node < nodes.count, nodes[node].kind == .object else { return [] }
        var out: [(Int, Int)] = []
        var k = node + 1
        let end = Int(nodes[node].next)
        while k + 1 < end {
            out.append((k, k + 1))
            k = Int(nodes[k + 1].next)
        }
        return out
    }

    /// The elements of the array at `node`, in order.
    public func elements(_ node: Int) -> [Int] {
        guard node >= 0, node < nodes.count, nodes[node].kind == .array else { return [] }
        var out: [Int] = []
        var k = node + 1
        let end = Int(nodes[node].next)
        while k < end {
            out.append(k)
            k = Int(nodes[k].next)
        }
        return out
    }

    public func kind(_ node: Int) -> Kind { nodes[node].kind }

    /// The node's raw bytes: a string's escaped contents (no quotes), any other value's full text.
    public func raw(_ node: Int) -> UnsafeRawBufferPointer {
        let n = nodes[node]
        return UnsafeRawBufferPointer(rebasing: bytes[Int(n.start)..<Int(n.end)])
    }

    /// The node's full JSON text (a string with its quotes).
    public func json(_ node: Int) -> UnsafeRawBufferPointer {
        let n = nodes[node]
        if n.kind == .string { return UnsafeRawBufferPointer(rebasing: bytes[Int(n.start - 1)..<Int(n.end + 1)]) }
        return raw(node)
    }

    /// A string node's value, unescaped; nil for other kinds.
    public func string(_ node: Int) -> String? {
        guard node >= 0, node < nodes.count, nodes[node].kind == .string else { return nil }
        let raw = raw(node)
        if !nodes[node].escaped { return String(decoding: raw, as: UTF8.self) }
        return JSONText.unescape(raw)
    }

    /// Whether a string node's value equals `s` (no allocation when it holds no escapes).
    public func stringEquals(_ node: Int, _ s: StaticString) -> Bool {
        guard node >= 0, node < nodes.count, nodes[node].kind == .string else { return false }
        let n = nodes[node]
        if n.escaped { return string(node) == s.description }
        return Int(n.end - n.start) == s.utf8CodeUnitCount
            && memcmp(bytes.baseAddress! + Int(n.start), s.utf8Start, s.utf8CodeUnitCount) == 0
    }

    /// A string node's value when it has no escapes, as bytes (no allocation).
    public func plainString(_ node: Int) -> UnsafeRawBufferPointer? {
        guard node >= 0, node < nodes.count, nodes[node].kind == .string, !nodes[node].escaped else { return nil }
        return raw(node)
    }

    /// The value of a scalar node as text: a string unescaped, a number or literal as written.
    public func scalarText(_ node: Int) -> String? {
        switch nodes[node].kind {
        case .string: string(node)
        case .number, .true, .false: String(decoding: raw(node), as: UTF8.self)
        case .null, .object, .array: nil
        }
    }
}

/// JSON string text helpers shared by the event builder, the codecs and the filters.
public enum JSONText {
    /// Appends `s` as the contents of a JSON string (escaped; no quotes).
    public static func appendEscaped(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0), to: &out) }
    }

    /// Appends UTF-8 bytes as the contents of a JSON string, escaping quotes, backslashes and control
    /// characters (e.g. JSON text to be carried as a string).
    public static func appendEscaped(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        guard let p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let hex: StaticString = "0123456789abcdef"
        let n = bytes.count
        var runStart = 0
        var i = 0
        while i < n {
            let b = p[i]
            if b != 0x22 && b != 0x5c && b >= 0x20 {
                i += 1
                continue
            }
            out.append(contentsOf: UnsafeRawBufferPointer(start: p + runStart, count: i - runStart))
            out.append(0x5c)
            switch b {
            case 0x22, 0x5c: out.append(b)
            case 0x0a: out.append(UInt8(ascii: "n"))
            case 0x0d: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            default:
                out.append(UInt8(ascii: "u"))
                out.append(0x30)
                out.append(0x30)
                out.append(hex.utf8Start[Int(b >> 4)])
                out.append(hex.utf8Start[Int(b & 15)])
            }
            i += 1
            runStart = i
        }
        out.append(contentsOf: UnsafeRawBufferPointer(start: p + runStart, count: n - runStart))
    }

    /// Whether JSON text holds a line break (necessarily whitespace between tokens, as JSON strings
    /// cannot hold raw control characters): such text must be compacted before it goes into a line
    /// of NDJSON or an Elasticsearch bulk body.
    @inline(__always)
    public static func hasLineBreak(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return false }
        return memchr(base, 0x0a, bytes.count) != nil || memchr(base, 0x0d, bytes.count) != nil
    }

    /// Appends JSON text without the whitespace between its tokens (strings are copied as they are).
    public static func appendCompact(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        var inString = false
        var escaped = false
        for b in bytes {
            if inString {
                out.append(b)
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
            } else if b == 0x20 || b == 0x0a || b == 0x0d || b == 0x09 {
                continue
            } else {
                if b == UInt8(ascii: "\"") { inString = true }
                out.append(b)
            }
        }
    }

    /// Appends JSON text as it is, or compacted when it holds line breaks.
    @inline(__always)
    public static func appendOneLine(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        if hasLineBreak(bytes) { appendCompact(bytes, to: &out) } else { out.append(contentsOf: bytes) }
    }

    /// Decodes escaped JSON string contents. Invalid escapes are kept as written; unpaired surrogates
    /// become U+FFFD.
    public static func unescape(_ raw: UnsafeRawBufferPointer) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = 0
        let n = raw.count
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= n else { return nil }
            var v: UInt32 = 0
            for k in at..<at + 4 {
                let c = raw[k]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                default: return nil
                }
                v = v << 4 | d
            }
            return v
        }
        while i < n {
            let c = raw[i]
            guard c == UInt8(ascii: "\\"), i + 1 < n else {
                out.append(c)
                i += 1
                continue
            }
            let e = raw[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "u"):
                guard var scalar = hex4(i) else {
                    out += [0x5c, e]
                    continue
                }
                i += 4
                if (0xD800..<0xDC00).contains(scalar) {
                    if i + 6 <= n, raw[i] == UInt8(ascii: "\\"), raw[i + 1] == UInt8(ascii: "u"), let low = hex4(i + 2), (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    } else {
                        scalar = 0xFFFD
                    }
                } else if (0xDC00..<0xE000).contains(scalar) {
                    scalar = 0xFFFD
                }
                out += Array(String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
            default: out.append(e)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
