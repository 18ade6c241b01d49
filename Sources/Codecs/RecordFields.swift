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

    init(_ t: RecordTree) {
        self.t = t
        let r = RecordTree.root
        eventName = t.member(r, "eventName")
        eventSource = t.member(r, "eventSource")
        eventID = t.member(r, "eventID")
        eventTime = t.member(r, "eventTime")
        eventType = t.member(r, "eventType")
        eventCategory = t.member(r, "eventCategory")
        eventVersion = t.member(r, "eventVersion")
        awsRegion = t.member(r, "awsRegion")
        recipientAccountId = t.member(r, "recipientAccountId")
        sourceIPAddress = t.member(r, "sourceIPAddress")
        userAgent = t.member(r, "userAgent")
        errorCode = t.member(r, "errorCode")
        errorMessage = t.member(r, "errorMessage")
        requestParameters = t.member(r, "requestParameters")
        responseElements = t.member(r, "responseElements")
        additionalEventData = t.member(r, "additionalEventData")
        serviceEventDetails = t.member(r, "serviceEventDetails")
        insightDetails = t.member(r, "insightDetails")
        requestID = t.member(r, "requestID")
        apiVersion = t.member(r, "apiVersion")
        managementEvent = t.member(r, "managementEvent")
        readOnly = t.member(r, "readOnly")
        resources = t.member(r, "resources")
        sharedEventID = t.member(r, "sharedEventID")
        vpcEndpointId = t.member(r, "vpcEndpointId")
        tlsDetails = t.member(r, "tlsDetails")
        let ui = t.member(r, "userIdentity")
        userIdentity = ui
        uiType = ui.flatMap { t.member($0, "type") }
        uiPrincipalId = ui.flatMap { t.member($0, "principalId") }
        uiArn = ui.flatMap { t.member($0, "arn") }
        uiAccountId = ui.flatMap { t.member($0, "accountId") }
        uiAccessKeyId = ui.flatMap { t.member($0, "accessKeyId") }
        uiUserName = ui.flatMap { t.member($0, "userName") }
        uiInvokedBy = ui.flatMap { t.member($0, "invokedBy") }
        onBehalfOfUserId = ui.flatMap { t.member($0, "onBehalfOf") }.flatMap { t.member($0, "userId") }
        let session = ui.flatMap { t.member($0, "sessionContext") }
        let attributes = session.flatMap { t.member($0, "attributes") }
        mfaAuthenticated = attributes.flatMap { t.member($0, "mfaAuthenticated") }
        sessionCreationDate = attributes.flatMap { t.member($0, "creationDate") }
        let issuer = session.flatMap { t.member($0, "sessionIssuer") }
        issuerType = issuer.flatMap { t.member($0, "type") }
        issuerPrincipalId = issuer.flatMap { t.member($0, "principalId") }
        issuerArn = issuer.flatMap { t.member($0, "arn") }
        issuerAccountId = issuer.flatMap { t.member($0, "accountId") }
        issuerUserName = issuer.flatMap { t.member($0, "userName") }
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

    /// The session name of an assumed role (`arn:aws:sts::1:assumed-role/Role/session` → `session`).
    var assumedRoleSession: String? {
        guard let arn = text(uiArn), arn.contains(":assumed-role/") else { return nil }
        let parts = arn.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count >= 3 ? String(parts[parts.count - 1]) : nil
    }

    /// The name of who acted, by identity type: an IAM user's or root's `userName`, an assumed role's
    /// session name, a federated user's issuer name; nil when the record names nobody.
    var actorName: String? {
        if let name = text(uiUserName) { return name }
        if let session = assumedRoleSession { return session }
        if let issuer = text(issuerUserName) { return issuer }
        if let type = uiType, t.stringEquals(type, "Root") { return "root" }
        return nil
    }
}

/// What an API name's verb says it does (shared by the ECS `event.type` and the OCSF `activity_id`).
enum Verb {
    case create, read, update, delete, other

    /// Prefixes, longest first where one begins another (`Deregister` before `De…` is not needed: no
    /// prefix here begins another of a different verb).
    private static let table: [(String, Verb)] = [
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
        ("Delete", .delete), ("Remove", .delete), ("Terminate", .delete), ("Deregister", .delete),
        ("Release", .delete), ("Purge", .delete), ("Deactivate", .update), ("Activate", .update),
    ]

    /// The verb of `name` (`CreateUser` → create); a name that starts with none of the prefixes falls
    /// back on `readOnly`: read when true, other otherwise.
    static func of(_ name: String?, readOnly: Bool?) -> Verb {
        if let name {
            for (prefix, verb) in table where name.hasPrefix(prefix) {
                // A prefix must end at a word boundary: `Get` in `GetObject`, not in `Getaway`.
                let rest = name.dropFirst(prefix.count)
                if rest.isEmpty || rest.first!.isUppercase { return verb }
            }
        }
        return readOnly == true ? .read : .other
    }
}

/// IP address recognition for `source.ip` (`sourceIPAddress` is often a service name).
enum IPAddress {
    static func isIP(_ text: UnsafeRawBufferPointer) -> Bool {
        guard text.count >= 2, text.count < 64 else { return false }
        var buffer = [CChar](repeating: 0, count: 65)
        for (i, b) in text.enumerated() { buffer[i] = CChar(bitPattern: b) }
        var storage = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, buffer, &storage) == 1 { return true }
        return inet_pton(AF_INET6, buffer, &storage) == 1
    }
}
