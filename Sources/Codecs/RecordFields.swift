#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Stages

/// The CloudTrail fields both mappings read, looked up once per record.
struct RecordFields {
    let t: RecordTree
    let eventName, eventSource, eventID, eventTime, eventType, eventCategory, eventVersion: Int?
    let awsRegion, recipientAccountId, sourceIPAddress, userAgent, errorCode, errorMessage: Int?
    let requestParameters, responseElements, additionalEventData, serviceEventDetails, insightDetails: Int?
    let requestID, apiVersion, managementEvent, readOnly, resources, sharedEventID, vpcEndpointId: Int?
    let tlsDetails, userIdentity: Int?
    // userIdentity
    let uiType, uiPrincipalId, uiArn, uiAccountId, uiAccessKeyId, uiUserName, uiInvokedBy: Int?
    let mfaAuthenticated, sessionCreationDate, issuerType, issuerPrincipalId, issuerArn, issuerAccountId, issuerUserName: Int?
    let onBehalfOfUserId: Int?

    /// The top-level names read, in the order of `top`'s slots below.
    private static let topNames: MemberTable = MemberTable([
        "eventName", "eventSource", "eventID", "eventTime", "eventType", "eventCategory", "eventVersion", "awsRegion",
        "recipientAccountId", "sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters",
        "responseElements", "additionalEventData", "serviceEventDetails", "insightDetails", "requestID", "apiVersion",
        "managementEvent", "readOnly", "resources", "sharedEventID", "vpcEndpointId", "tlsDetails", "userIdentity",
    ])
    private static let identityNames = MemberTable(["type", "principalId", "arn", "accountId", "accessKeyId", "userName", "invokedBy", "onBehalfOf", "sessionContext"])
    private static let issuerNames = MemberTable(["type", "principalId", "arn", "accountId", "userName"])

    init(_ t: RecordTree) {
        self.t = t
        // One pass over the record's members (and over userIdentity's) instead of a lookup per field.
        var top = [Int?](repeating: nil, count: 27)
        Self.topNames.find(in: t, RecordTree.root, into: &top)
        (eventName, eventSource, eventID, eventTime, eventType, eventCategory, eventVersion, awsRegion) = (top[0], top[1], top[2], top[3], top[4], top[5], top[6], top[7])
        (recipientAccountId, sourceIPAddress, userAgent, errorCode, errorMessage, requestParameters) = (top[8], top[9], top[10], top[11], top[12], top[13])
        (responseElements, additionalEventData, serviceEventDetails, insightDetails, requestID, apiVersion) = (top[14], top[15], top[16], top[17], top[18], top[19])
        (managementEvent, readOnly, resources, sharedEventID, vpcEndpointId, tlsDetails, userIdentity) = (top[20], top[21], top[22], top[23], top[24], top[25], top[26])
        var ui = [Int?](repeating: nil, count: 9)
        if let identity = userIdentity { Self.identityNames.find(in: t, identity, into: &ui) }
        (uiType, uiPrincipalId, uiArn, uiAccountId, uiAccessKeyId, uiUserName, uiInvokedBy) = (ui[0], ui[1], ui[2], ui[3], ui[4], ui[5], ui[6])
        onBehalfOfUserId = ui[7].flatMap { t.member($0, "userId") }
        let session = ui[8]
        let attributes = session.flatMap { t.member($0, "attributes") }
        mfaAuthenticated = attributes.flatMap { t.member($0, "mfaAuthenticated") }
        sessionCreationDate = attributes.flatMap { t.member($0, "creationDate") }
        var issuer = [Int?](repeating: nil, count: 5)
        if let node = session.flatMap({ t.member($0, "sessionIssuer") }) { Self.issuerNames.find(in: t, node, into: &issuer) }
        (issuerType, issuerPrincipalId, issuerArn, issuerAccountId, issuerUserName) = (issuer[0], issuer[1], issuer[2], issuer[3], issuer[4])
        assumedRoleSession = Self.session(t, uiArn, ":assumed-role/")
        sessionName = assumedRoleSession ?? Self.session(t, uiArn, ":federated-user/")
    }

    /// A string node (nil for other kinds, and for empty strings).
    func str(_ node: Int?) -> Int? {
        guard let node, t.kind(node) == .string, t.nodes[node].end > t.nodes[node].start else { return nil }
        return node
    }

    func text(_ node: Int?) -> String? { str(node).flatMap { t.string($0) } }

    /// A JSON boolean, or the strings "true"/"false" (CloudTrail writes `mfaAuthenticated` as a string).
    func bool(_ node: Int?) -> Bool? {
        guard let node else { return nil }
        switch t.kind(node) {
        case .true: return true
        case .false: return false
        case .string:
            if t.stringEquals(node, "true") { return true }
            if t.stringEquals(node, "false") { return false }
            return nil
        default: return nil
        }
    }

    /// An object or array node that holds something (not null, not `{}`).
    func structured(_ node: Int?) -> Int? {
        guard let node, t.kind(node) == .object || t.kind(node) == .array, t.nodes[node].next > Int32(node + 1) else { return nil }
        return node
    }

    /// Whether the event failed: an `errorCode`, or a console sign-in whose response says Failure.
    var failed: Bool {
        if str(errorCode) != nil { return true }
        if let r = responseElements, let login = t.member(r, "ConsoleLogin") { return !t.stringEquals(login, "Success") }
        return false
    }

    var isConsoleLogin: Bool { eventName.map { t.stringEquals($0, "ConsoleLogin") } ?? false }

    /// The session name of an assumed role (`arn:aws:sts::1:assumed-role/Role/session` → `session`), as
    /// escaped JSON string contents (a slice of the record).
    let assumedRoleSession: UnsafeRawBufferPointer?
    /// The session name of an assumed role or of a federated user (`…:federated-user/name`).
    let sessionName: UnsafeRawBufferPointer?

    /// The part of `arn` after its last `/`, when the ARN holds `marker` and a slash after it.
    static func session(_ t: RecordTree, _ arn: Int?, _ marker: StaticString) -> UnsafeRawBufferPointer? {
        guard let arn, t.kind(arn) == .string else { return nil }
        let bytes = t.raw(arn)
        let m = marker.utf8CodeUnitCount
        guard bytes.count > m, let base = bytes.baseAddress,
            let hit = (0...(bytes.count - m)).first(where: { bytes[$0] == marker.utf8Start[0] && memcmp(base + $0, marker.utf8Start, m) == 0 }),
            let slash = bytes.lastIndex(of: UInt8(ascii: "/")), slash >= hit + m - 1, slash + 1 < bytes.count
        else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[(slash + 1)...])
    }

    /// The name of who acted, by identity type, as escaped string contents: an IAM user's `userName`, an
    /// assumed role's session name, a federated user's issuer name, `root` for the root user; nil when
    /// the record names nobody.
    var actorName: UnsafeRawBufferPointer? {
        if let name = str(uiUserName) { return t.raw(name) }
        if let session = assumedRoleSession { return session }
        if let issuer = str(issuerUserName) { return t.raw(issuer) }
        if let type = uiType, t.stringEquals(type, "Root") { return UnsafeRawBufferPointer(start: Self.root.utf8Start, count: 4) }
        return nil
    }
    private static let root: StaticString = "root"
}

/// Several member names looked up in one pass over an object: the names are bucketed by length, so
/// a key is compared with at most the few names of its length.
struct MemberTable {
    let names: [StaticString]
    private let byLength: [[Int]]

    init(_ names: [StaticString]) {
        self.names = names
        var buckets = [[Int]](repeating: [], count: 33)
        for (i, n) in names.enumerated() { buckets[min(32, n.utf8CodeUnitCount)].append(i) }
        byLength = buckets
    }

    /// Sets `found[i]` to the value node of member `names[i]` of the object at `node` (the first one
    /// when a key repeats).
    func find(in t: RecordTree, _ node: Int, into found: inout [Int?]) {
        guard node >= 0, node < t.nodes.count, t.nodes[node].kind == .object, let base = t.bytes.baseAddress else { return }
        t.nodes.withUnsafeBufferPointer { nodes in
            var k = node + 1
            let end = Int(nodes[node].next)
            while k + 1 < end {
                let key = nodes[k]
                let length = Int(key.end - key.start)
                if length < 32, !key.escaped {
                    for i in byLength[length] where found[i] == nil && memcmp(base + Int(key.start), names[i].utf8Start, length) == 0 {
                        found[i] = k + 1
                    }
                }
                k = Int(nodes[k + 1].next)
            }
        }
    }
}

/// Whether escaped string contents hold an `@` after their first byte (an email-like name).
func isEmailLike(_ raw: UnsafeRawBufferPointer) -> Bool {
    guard let at = raw.firstIndex(of: UInt8(ascii: "@")) else { return false }
    return at > 0
}

/// What an API name's verb says it does (shared by the ECS `event.type` and the OCSF `activity_id`).
enum Verb {
    case create, read, update, delete, other

    private static let table: [(StaticString, Verb)] = [
        ("Create", .create), ("Add", .create), ("Allocate", .create), ("Import", .create), ("Register", .create),
        ("Run", .create), ("Issue", .create), ("Copy", .create), ("Upload", .create), ("Generate", .create),
        ("Request", .create), ("Launch", .create), ("Publish", .create), ("Send", .create), ("Invoke", .create),
        ("Get", .read), ("Describe", .read), ("List", .read), ("Head", .read), ("Lookup", .read), ("Search", .read),
        ("Query", .read), ("Scan", .read), ("Select", .read), ("BatchGet", .read), ("Check", .read),
        ("Download", .read), ("Filter", .read), ("Preview", .read), ("Decrypt", .read), ("Verify", .read),
        ("Update", .update), ("Modify", .update), ("Put", .update), ("Set", .update), ("Change", .update),
        ("Edit", .update), ("Enable", .update), ("Disable", .update), ("Attach", .update), ("Detach", .update),
        ("Associate", .update), ("Disassociate", .update), ("Reset", .update), ("Replace", .update),
        ("Rotate", .update), ("Tag", .update), ("Untag", .update), ("Start", .update), ("Stop", .update),
        ("Reboot", .update), ("Restore", .update), ("Apply", .update), ("Accept", .update), ("Reject", .update),
        ("Cancel", .update), ("Authorize", .update), ("Revoke", .update), ("Encrypt", .update), ("ReEncrypt", .update),
        ("Deactivate", .update), ("Activate", .update),
        ("Delete", .delete), ("Remove", .delete), ("Terminate", .delete), ("Deregister", .delete),
        ("Release", .delete), ("Purge", .delete),
    ]

    /// The verb of an event name (`CreateUser` → create): the prefix it begins with, which must end at
    /// a word boundary (`Get` in `GetObject`, not in `Getaway`); a name with none of them falls back on
    /// `readOnly`: read when true, other otherwise.
    static func of(_ name: UnsafeRawBufferPointer?, readOnly: Bool?) -> Verb {
        if let name, let base = name.baseAddress {
            for (prefix, verb) in table {
                let n = prefix.utf8CodeUnitCount
                guard name.count >= n, memcmp(base, prefix.utf8Start, n) == 0 else { continue }
                if name.count == n || (name[n] >= UInt8(ascii: "A") && name[n] <= UInt8(ascii: "Z")) { return verb }
            }
        }
        return readOnly == true ? .read : .other
    }

    static func of(_ name: String?, readOnly: Bool?) -> Verb {
        guard var name else { return of(UnsafeRawBufferPointer?.none, readOnly: readOnly) }
        return name.withUTF8 { of(UnsafeRawBufferPointer($0), readOnly: readOnly) }
    }
}

/// IP address recognition for `source.ip` (`sourceIPAddress` is often a service name).
enum IPAddress {
    /// Whether the text is an IPv4 or IPv6 address (inet_pton's grammar), without allocating.
    static func isIP(_ text: UnsafeRawBufferPointer) -> Bool {
        guard text.count >= 2, text.count < 64,
            text.allSatisfy({ ($0 >= 0x30 && $0 <= 0x3a) || $0 == 0x2e || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) })
        else { return false }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64 + 16) { buffer in
            let base = buffer.baseAddress!
            for (i, b) in text.enumerated() { base[i] = CChar(bitPattern: b) }
            base[text.count] = 0
            let storage = UnsafeMutableRawPointer(base + 64)
            return inet_pton(AF_INET, base, storage) == 1 || inet_pton(AF_INET6, base, storage) == 1
        }
    }
}
