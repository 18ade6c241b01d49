import Stages

/// Writes nested JSON objects member by member, for the codecs.
///
/// An object opened with ``open(_:)`` is written only when its first member is: a section with no
/// member (a record without `tlsDetails`, say) leaves no `"tls":{}` behind. Keys are static ASCII
/// names; values are either raw JSON copied from the record or values the codec computed.
struct JSONWriter {
    var out: [UInt8] = []
    /// Per open object: its key (nil for the root), whether it was written, whether it has a member.
    private var stack: [(key: StaticString?, written: Bool, members: Bool)] = []

    init(capacity: Int) { out.reserveCapacity(capacity) }

    /// Forgets open objects (the buffer is the caller's: see `EventEncoder.writing`).
    mutating func reset() {
        stack.removeAll(keepingCapacity: true)
    }

    /// Opens an object: the root when `key` is nil, else a member of the current object.
    mutating func open(_ key: StaticString? = nil) {
        stack.append((key, false, false))
        if key == nil { materialize(stack.count - 1) }
    }

    /// Closes the current object (writing `}` only if it was written).
    mutating func close() {
        let top = stack.removeLast()
        if top.written { out.append(UInt8(ascii: "}")) }
    }

    private mutating func materialize(_ level: Int) {
        guard !stack[level].written else { return }
        if level > 0 {
            materialize(level - 1)
            memberKey(stack[level].key!, at: level - 1)
        }
        out.append(UInt8(ascii: "{"))
        stack[level].written = true
    }

    private mutating func memberKey(_ key: StaticString, at level: Int) {
        let n = key.utf8CodeUnitCount
        let comma = stack[level].members
        stack[level].members = true
        out.reserveCapacity(out.count + n + 4)
        if comma { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeRawBufferPointer(start: key.utf8Start, count: n))
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    /// Starts a member of the current object; the caller appends its value to `out`.
    mutating func key(_ key: StaticString) {
        let level = stack.count - 1
        materialize(level)
        memberKey(key, at: level)
    }

    /// Starts a member whose key is computed (escaped as needed).
    mutating func dynamicKey(_ key: String) {
        let level = stack.count - 1
        materialize(level)
        if stack[level].members { out.append(UInt8(ascii: ",")) }
        stack[level].members = true
        out.append(UInt8(ascii: "\""))
        JSONText.appendEscaped(key, to: &out)
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    /// A member whose value is raw JSON text (compacted when it spans lines).
    mutating func raw(_ key: StaticString, _ json: UnsafeRawBufferPointer) {
        self.key(key)
        JSONText.appendOneLine(json, to: &out)
    }

    mutating func raw(_ key: StaticString, _ json: StaticString) {
        self.key(key)
        out.append(contentsOf: UnsafeRawBufferPointer(start: json.utf8Start, count: json.utf8CodeUnitCount))
    }

    /// A string member from already-escaped contents.
    mutating func escaped(_ key: StaticString, _ contents: UnsafeRawBufferPointer) {
        self.key(key)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: contents)
        out.append(UInt8(ascii: "\""))
    }

    /// A string member from plain text.
    mutating func string(_ key: StaticString, _ value: String) {
        self.key(key)
        out.append(UInt8(ascii: "\""))
        JSONText.appendEscaped(value, to: &out)
        out.append(UInt8(ascii: "\""))
    }

    /// A string member whose value is a constant (no escaping needed).
    mutating func constant(_ key: StaticString, _ value: StaticString) {
        self.key(key)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount))
        out.append(UInt8(ascii: "\""))
    }

    /// A string member holding JSON text (an object carried as a string).
    mutating func stringOfJSON(_ key: StaticString, _ json: UnsafeRawBufferPointer) {
        self.key(key)
        out.append(UInt8(ascii: "\""))
        if JSONText.hasLineBreak(json) {
            var compact: [UInt8] = []
            JSONText.appendCompact(json, to: &compact)
            compact.withUnsafeBytes { JSONText.appendEscaped($0, to: &out) }
        } else {
            JSONText.appendEscaped(json, to: &out)
        }
        out.append(UInt8(ascii: "\""))
    }

    mutating func int(_ key: StaticString, _ value: Int64) {
        self.key(key)
        out.append(contentsOf: String(value).utf8)
    }

    mutating func bool(_ key: StaticString, _ value: Bool) {
        raw(key, value ? "true" : "false")
    }

    /// Starts the next element of a list member: `"key":[` before the first (`started` false), `,`
    /// before the others. A list that gets no element writes nothing.
    mutating func nextElement(of key: StaticString, _ started: inout Bool) {
        if started {
            out.append(UInt8(ascii: ","))
        } else {
            self.key(key)
            out.append(UInt8(ascii: "["))
            started = true
        }
    }

    /// Ends a list member begun with ``nextElement(of:_:)``, if it was.
    mutating func endList(_ started: Bool) {
        if started { out.append(UInt8(ascii: "]")) }
    }

    /// A member whose value is a list of strings.
    mutating func strings(_ key: StaticString, _ values: [String]) {
        self.key(key)
        out.append(UInt8(ascii: "["))
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            JSONText.appendEscaped(v, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "]"))
    }
}
