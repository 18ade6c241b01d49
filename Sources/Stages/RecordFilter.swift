/// Which records an output ships, and which fields of them: `include` and `exclude` rules over record
/// fields, and `drop_fields`.
///
/// - A **rule** is a set of conditions, all of which must hold. A **condition** names a field by its
///   path in the record (`eventName`, `userIdentity.type`) and lists values or `*`/`?` globs; it holds
///   when the field's value matches one of them (a path through an array: when any element's does). A
///   value written `!pattern` negates: the condition then
///   also requires that the value matches none of the negated patterns (a condition of negations only
///   holds for every other value, and for a missing field).
/// - A record is kept when it matches at least one `include` rule (or there are none) and no `exclude`
///   rule. So "drop read-only events except a watch-list" is one exclude rule:
///   `{readOnly: true, eventName: ["!GetSecretValue", "!GetPasswordData"]}`.
/// - Values compare with the field's JSON value as text: strings unescaped, `true`/`false`, numbers as
///   written; case-sensitive, as CloudTrail's values are. An object, array or null matches nothing.
/// - `drop_fields` removes members at those paths from the record before it is encoded; a path that
///   meets an array applies to each element (`resources.accountId`).
public struct RecordFilter: Sendable, Equatable {
    public struct Condition: Sendable, Equatable {
        public var path: [String]
        public var patterns: [Glob]
        public var negated: [Glob]
    }
    public struct Rule: Sendable, Equatable {
        public var conditions: [Condition]
    }

    public var include: [Rule]
    public var exclude: [Rule]
    public var dropFields: [[String]]
    private var drops: DropTree

    /// The fields of a CloudTrail record a rule or `drop_fields` may start with: a name outside this
    /// list is almost always a typo (`eventname`), so the configuration refuses it.
    public static let recordFields: Set<String> = [
        "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
        "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements", "additionalEventData",
        "requestID", "eventID", "readOnly", "resources", "eventType", "apiVersion", "managementEvent",
        "recipientAccountId", "serviceEventDetails", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId",
        "eventCategory", "addendum", "sessionCredentialFromConsole", "edgeDeviceDetails", "tlsDetails",
        "insightDetails",
    ]

    /// Rules are lists of mappings from a field path (dotted) to a value or a list of values.
    public init(include: [[String: [String]]] = [], exclude: [[String: [String]]] = [], dropFields: [String] = []) {
        func rule(_ spec: [String: [String]]) -> Rule {
            Rule(conditions: spec.keys.sorted().map { field in
                let values = spec[field]!
                return Condition(
                    path: field.split(separator: ".").map(String.init),
                    patterns: values.filter { !$0.hasPrefix("!") }.map(Glob.init),
                    negated: values.filter { $0.hasPrefix("!") }.map { Glob(String($0.dropFirst())) })
            })
        }
        self.include = include.map(rule)
        self.exclude = exclude.map(rule)
        self.dropFields = dropFields.map { $0.split(separator: ".").map(String.init) }
        var tree = DropTree()
        for path in self.dropFields where !path.isEmpty { tree.insert(path[...]) }
        drops = tree
    }

    /// Whether the filter does nothing (no rules, no dropped fields).
    public var isEmpty: Bool { include.isEmpty && exclude.isEmpty && dropFields.isEmpty }

    /// Whether the record (parsed into `tree`) is shipped.
    public func keeps(_ tree: RecordTree) -> Bool {
        if !include.isEmpty && !include.contains(where: { matches($0, tree) }) { return false }
        return !exclude.contains { matches($0, tree) }
    }

    private func matches(_ rule: Rule, _ tree: RecordTree) -> Bool {
        rule.conditions.allSatisfy { condition in
            var values: [Int] = []
            collect(RecordTree.root, condition.path[...], tree, &values)
            guard !values.isEmpty else { return condition.patterns.isEmpty && !condition.negated.isEmpty }
            func hit(_ glob: Glob) -> Bool {
                values.contains { node in
                    if let plain = tree.plainString(node) ?? (tree.kind(node) == .string ? nil : tree.raw(node)) { return glob.matches(plain) }
                    return glob.matches(tree.string(node) ?? "")
                }
            }
            if condition.negated.contains(where: hit) { return false }
            return condition.patterns.isEmpty || condition.patterns.contains(where: hit)
        }
    }

    /// The scalar values at `path` below `node`; an array on the way contributes each of its elements.
    private func collect(_ node: Int, _ path: ArraySlice<String>, _ tree: RecordTree, _ out: inout [Int]) {
        switch tree.kind(node) {
        case .array:
            for element in tree.elements(node) { collect(element, path, tree, &out) }
        case .object:
            guard let name = path.first, let next = tree.member(node, named: name) else { return }
            collect(next, path.dropFirst(), tree, &out)
        case .null:
            return
        default:
            if path.isEmpty { out.append(node) }
        }
    }

    /// Appends the record without the `drop_fields` members. Returns false (appending nothing) when
    /// there is nothing to drop, so the caller can use the record as it is.
    public func appendDroppingFields(_ tree: RecordTree, to out: inout [UInt8]) -> Bool {
        guard !drops.children.isEmpty, !tree.nodes.isEmpty else { return false }
        write(RecordTree.root, drops, tree, &out)
        return true
    }

    private func write(_ node: Int, _ drops: DropTree, _ tree: RecordTree, _ out: inout [UInt8]) {
        switch tree.kind(node) {
        case .object:
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in tree.members(node) {
                let name = tree.string(key) ?? ""
                let below = drops.children[name]
                if below?.terminal == true { continue }
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.append(contentsOf: tree.json(key))
                out.append(UInt8(ascii: ":"))
                if let below { write(value, below, tree, &out) } else { out.append(contentsOf: tree.json(value)) }
            }
            out.append(UInt8(ascii: "}"))
        case .array:
            out.append(UInt8(ascii: "["))
            for (i, element) in tree.elements(node).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(element, drops, tree, &out)
            }
            out.append(UInt8(ascii: "]"))
        default:
            out.append(contentsOf: tree.json(node))
        }
    }

    private struct DropTree: Sendable, Equatable {
        var terminal = false
        var children: [String: DropTree] = [:]
        mutating func insert(_ path: ArraySlice<String>) {
            guard let first = path.first else {
                terminal = true
                return
            }
            children[first, default: DropTree()].insert(path.dropFirst())
        }
    }
}

/// A glob over bytes: `*` any run, `?` one byte, anything else literally.
public struct Glob: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    private let bytes: [UInt8]
    private let literal: Bool

    public init(_ pattern: String) {
        self.pattern = pattern
        bytes = Array(pattern.utf8)
        literal = !bytes.contains(UInt8(ascii: "*")) && !bytes.contains(UInt8(ascii: "?"))
    }

    public var description: String { pattern }

    public func matches(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { matches(UnsafeRawBufferPointer($0)) }
    }

    public func matches(_ s: UnsafeRawBufferPointer) -> Bool {
        if literal { return s.count == bytes.count && s.elementsEqual(bytes) }
        // Iterative matching with one backtrack point (the last star): linear for typical patterns.
        var p = 0, i = 0
        var star = -1, mark = 0
        while i < s.count {
            if p < bytes.count && (bytes[p] == UInt8(ascii: "?") || bytes[p] == s[i]) && bytes[p] != UInt8(ascii: "*") {
                p += 1
                i += 1
            } else if p < bytes.count && bytes[p] == UInt8(ascii: "*") {
                star = p
                mark = i
                p += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                i = mark
            } else {
                return false
            }
        }
        while p < bytes.count && bytes[p] == UInt8(ascii: "*") { p += 1 }
        return p == bytes.count
    }
}
