#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Stages

/// CloudTrail → ECS, following Elastic's `aws.cloudtrail` integration (its field reference and the
/// value rules of its ingest pipeline), so Elastic Security's prebuilt rules and dashboards see the
/// fields they query. Where this mapping differs from that pipeline, docs/codecs.md says so.
struct ECSMapper {
    static let ecsVersion: StaticString = "8.11.0"
    /// Elastic keeps a `flattened` copy only below this many bytes of text (Lucene's term limit).
    static let flattenedLimit = 32766

    let f: RecordFields
    let builder: EventBuilder
    let object: ObjectContext
    let record: RecordView
    let eventOriginal: Bool
    let t: RecordTree

    init(tree: RecordTree, builder: EventBuilder, object: ObjectContext, record: RecordView, eventOriginal: Bool) {
        f = RecordFields(tree)
        t = tree
        self.builder = builder
        self.object = object
        self.record = record
        self.eventOriginal = eventOriginal
    }

    /// A keyword member from a string node (nothing when the node is missing or not a non-empty string).
    private func keyword(_ w: inout JSONWriter, _ key: StaticString, _ node: Int?) {
        if let s = f.str(node) { w.escaped(key, t.raw(s)) }
    }

    mutating func write(into w: inout JSONWriter) -> EventInfo {
        w.open()
        w.key("@timestamp")
        w.out.append(UInt8(ascii: "\""))
        let fallback = builder.appendTimestamp(record, to: &w.out)
        w.out.append(UInt8(ascii: "\""))
        w.open("ecs")
        w.constant("version", Self.ecsVersion)
        w.close()

        let name = f.text(f.eventName)
        let (categories, types) = Self.categorize(name)
        w.open("event")
        w.constant("kind", "event")
        w.constant("module", "aws")
        w.constant("dataset", "aws.cloudtrail")
        if !categories.isEmpty { w.strings("category", categories) }
        w.strings("type", types)
        keyword(&w, "action", f.eventName)
        keyword(&w, "provider", f.eventSource)
        w.constant("outcome", outcome)
        keyword(&w, "id", f.eventID)
        w.key("created")
        w.out.append(UInt8(ascii: "\""))
        w.out.append(contentsOf: builder.receivedTimestamp)
        w.out.append(UInt8(ascii: "\""))
        if eventOriginal { w.stringOfJSON("original", record.bytes) }
        w.close()

        w.open("cloud")
        w.constant("provider", "aws")
        keyword(&w, "region", f.awsRegion)
        w.open("account")
        keyword(&w, "id", f.str(f.uiAccountId) ?? f.str(f.recipientAccountId))
        w.close()
        if let source = f.str(f.eventSource).flatMap({ t.plainString($0) }), let dot = source.firstIndex(of: UInt8(ascii: ".")),
            source.count > 14, memcmp(source.baseAddress! + source.count - 14, ".amazonaws.com", 14) == 0
        {
            w.open("service")
            w.escaped("name", UnsafeRawBufferPointer(rebasing: source[..<dot]))
            w.close()
        }
        w.close()

        if let address = f.str(f.sourceIPAddress) {
            w.open("source")
            w.escaped("address", t.raw(address))
            let raw = t.raw(address)
            if IPAddress.isIP(raw) {
                w.escaped("ip", raw)
            } else if Self.isDomain(raw) {
                w.escaped("domain", raw)
            }
            w.close()
        }

        let userName = ecsUserName
        let target = f.requestParameters.flatMap { t.member($0, "userName") }
        let newName = f.requestParameters.flatMap { t.member($0, "newUserName") }
        let targetID = f.responseElements.flatMap { t.member($0, "user") }.flatMap { t.member($0, "userId") }
        w.open("user")
        keyword(&w, "id", f.str(f.uiPrincipalId) ?? f.str(f.onBehalfOfUserId))
        if let userName { w.escaped("name", userName) }
        if let email = email(userName) { w.escaped("email", email) }
        w.open("target")
        keyword(&w, "id", targetID)
        keyword(&w, "name", target)
        w.close()
        w.open("changes")
        keyword(&w, "name", newName)
        w.close()
        w.close()

        w.open("group")
        keyword(&w, "id", f.responseElements.flatMap { t.member($0, "group") }.flatMap { t.member($0, "groupId") })
        keyword(&w, "name", f.requestParameters.flatMap { t.member($0, "groupName") })
        w.close()

        w.open("user_agent")
        keyword(&w, "original", f.userAgent)
        w.close()

        if let tls = f.tlsDetails {
            w.open("tls")
            if let version = raw(t.member(tls, "tlsVersion")) {
                // "TLSv1.2" → version_protocol "tls", version "1.2"; anything else stays whole in version.
                if let v = version.firstIndex(of: UInt8(ascii: "v")), v > 0, v + 1 < version.count {
                    w.escaped("version", UnsafeRawBufferPointer(rebasing: version[(v + 1)...]))
                    w.key("version_protocol")
                    w.out.append(UInt8(ascii: "\""))
                    for b in version[..<v] { w.out.append(b >= 0x41 && b <= 0x5a ? b | 0x20 : b) }
                    w.out.append(UInt8(ascii: "\""))
                } else {
                    w.escaped("version", version)
                }
            }
            keyword(&w, "cipher", t.member(tls, "cipherSuite"))
            w.open("client")
            keyword(&w, "server_name", t.member(tls, "clientProvidedHostHeader"))
            w.close()
            w.close()
        }

        w.open("error")
        keyword(&w, "code", f.errorCode)
        keyword(&w, "message", f.errorMessage)
        w.close()

        w.open("related")
        var values = RawList()
        values.add(raw(f.uiUserName))
        values.add(userName)
        values.add(raw(f.uiPrincipalId))
        values.add(raw(target))
        values.add(raw(newName))
        values.add(raw(targetID))
        if let session = f.sessionName {
            values.add(session)
            if isEmailLike(session) { values.add(UnsafeRawBufferPointer(rebasing: session[..<session.firstIndex(of: UInt8(ascii: "@"))!])) }
        }
        values.write(&w, "user")
        values = RawList()
        values.add(raw(f.uiArn))
        values.add(raw(f.uiPrincipalId))
        values.add(raw(f.issuerArn))
        values.add(raw(f.issuerUserName))
        values.add(raw(f.uiAccessKeyId))
        if let list = f.resources { for e in t.elements(list) { values.add(raw(t.member(e, "ARN"))) } }
        if let p = f.requestParameters {
            values.add(raw(t.member(p, "roleArn")))
            values.add(raw(t.member(p, "roleSessionName")))
            values.add(raw(t.member(p, "userName")))
        }
        values.write(&w, "entity")
        w.close()

        w.open("aws")
        writeCloudTrail(&w)
        w.key("s3")
        w.out.append(contentsOf: object.ecsS3)
        w.close()
        if fallback { w.strings("tags", [EventBuilder.fallbackTag]) }
        w.close()
        return EventInfo(id: builder.id(record), timestampFallback: fallback)
    }

    private func writeCloudTrail(_ w: inout JSONWriter) {
        w.open("cloudtrail")
        keyword(&w, "event_version", f.eventVersion)
        keyword(&w, "event_category", f.eventCategory)
        keyword(&w, "event_type", f.eventType)
        w.open("user_identity")
        keyword(&w, "type", f.uiType)
        keyword(&w, "arn", f.uiArn)
        keyword(&w, "access_key_id", f.uiAccessKeyId)
        keyword(&w, "invoked_by", f.uiInvokedBy)
        w.open("session_context")
        if let mfa = f.mfaAuthenticated {
            switch t.kind(mfa) {
            case .string: keyword(&w, "mfa_authenticated", mfa)
            case .true, .false: w.escaped("mfa_authenticated", t.raw(mfa))
            default: break
            }
        }
        if let created = f.str(f.sessionCreationDate), let millis = RFC3339.millis(t.raw(created)) {
            w.key("creation_date")
            w.out.append(UInt8(ascii: "\""))
            w.out.append(contentsOf: RFC3339.format(millis: millis))
            w.out.append(UInt8(ascii: "\""))
        }
        w.open("session_issuer")
        keyword(&w, "type", f.issuerType)
        keyword(&w, "principal_id", f.issuerPrincipalId)
        keyword(&w, "arn", f.issuerArn)
        keyword(&w, "account_id", f.issuerAccountId)
        w.close()
        w.close()
        w.close()
        keyword(&w, "error_code", f.errorCode)
        keyword(&w, "error_message", f.errorMessage)
        // The free-form objects as strings (JSON text here; Elastic's pipeline writes Java's Map.toString()),
        // and as objects under `flattened` below.
        let objects: [(StaticString, Int?)] = [
            ("request_parameters", f.requestParameters), ("response_elements", f.responseElements),
            ("additional_eventdata", f.additionalEventData), ("service_event_details", f.serviceEventDetails),
        ]
        for (key, node) in objects { if let n = f.structured(node) { w.stringOfJSON(key, t.json(n)) } }
        keyword(&w, "request_id", f.requestID)
        keyword(&w, "api_version", f.apiVersion)
        if let m = f.bool(f.managementEvent) { w.constant("management_event", m ? "true" : "false") }
        if let r = f.bool(f.readOnly) { w.bool("read_only", r) }
        writeResources(&w)
        keyword(&w, "recipient_account_id", f.recipientAccountId)
        keyword(&w, "shared_event_id", f.sharedEventID)
        keyword(&w, "vpc_endpoint_id", f.vpcEndpointId)
        keyword(&w, "session_credential_from_console", t.member(RecordTree.root, "sessionCredentialFromConsole"))
        if f.isConsoleLogin, let extra = f.additionalEventData {
            w.open("console_login")
            w.open("additional_eventdata")
            if let m = f.str(t.member(extra, "MobileVersion")) { w.bool("mobile_version", !t.stringEquals(m, "No")) }
            keyword(&w, "login_to", t.member(extra, "LoginTo"))
            if let m = f.str(t.member(extra, "MFAUsed")) { w.bool("mfa_used", !t.stringEquals(m, "No")) }
            w.close()
            w.close()
        }
        w.open("flattened")
        for (key, node) in objects + [("insight_details", f.insightDetails)] { flattened(&w, key, node) }
        w.close()
        w.close()
    }

    private func flattened(_ w: inout JSONWriter, _ key: StaticString, _ node: Int?) {
        guard let n = f.structured(node), t.kind(n) == .object else { return }
        let json = t.json(n)
        if json.count < Self.flattenedLimit { w.raw(key, json) }
    }

    /// `resources` with Elastic's names (`ARN` → `arn`, `accountId` → `account_id`), duplicates dropped.
    private func writeResources(_ w: inout JSONWriter) {
        guard let list = f.resources, t.kind(list) == .array else { return }
        var seen: [(UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?)] = []
        func same(_ a: UnsafeRawBufferPointer?, _ b: UnsafeRawBufferPointer?) -> Bool {
            guard let a, let b else { return a == nil && b == nil }
            return a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
        }
        var started = false
        for element in t.elements(list) where t.kind(element) == .object {
            let arn = raw(t.member(element, "ARN")), account = raw(t.member(element, "accountId")), type = raw(t.member(element, "type"))
            guard arn != nil || account != nil || type != nil,
                !seen.contains(where: { same($0.0, arn) && same($0.1, account) && same($0.2, type) })
            else { continue }
            seen.append((arn, account, type))
            w.nextElement(of: "resources", &started)
            var separator: UInt8 = UInt8(ascii: "{")
            for (name, value) in [("arn", arn), ("account_id", account), ("type", type)] as [(StaticString, UnsafeRawBufferPointer?)] {
                guard let value else { continue }
                w.out.append(separator)
                separator = UInt8(ascii: ",")
                w.out.append(UInt8(ascii: "\""))
                w.out.append(contentsOf: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
                w.out.append(UInt8(ascii: "\""))
                w.out.append(UInt8(ascii: ":"))
                w.out.append(UInt8(ascii: "\""))
                w.out.append(contentsOf: value)
                w.out.append(UInt8(ascii: "\""))
            }
            w.out.append(UInt8(ascii: "}"))
        }
        w.endList(started)
    }

    /// `failure` for an error code or message; a console sign-in says it in its response.
    private var outcome: StaticString {
        if f.isConsoleLogin, let r = f.responseElements, let login = t.member(r, "ConsoleLogin"), let s = f.text(login) {
            return s.lowercased() == "success" ? "success" : "failure"
        }
        return f.str(f.errorCode) != nil || f.str(f.errorMessage) != nil ? "failure" : "success"
    }

    /// A non-empty string value as escaped JSON contents (a slice of the record).
    private func raw(_ node: Int?) -> UnsafeRawBufferPointer? { f.str(node).map { t.raw($0) } }

    /// `userName`, replaced by the issuer's name (the role) for assumed roles and federated users.
    private var ecsUserName: UnsafeRawBufferPointer? {
        if let type = f.uiType, t.stringEquals(type, "AssumedRole") || t.stringEquals(type, "FederatedUser"),
            let issuer = raw(f.issuerUserName)
        {
            return issuer
        }
        if let name = raw(f.uiUserName) { return name }
        if let extra = f.additionalEventData, let name = f.eventName, t.stringEquals(name, "UserAuthentication") {
            return raw(t.member(extra, "UserName"))
        }
        return nil
    }

    /// An STS session named like an email address (IAM Identity Center), else a user name that is one.
    private func email(_ userName: UnsafeRawBufferPointer?) -> UnsafeRawBufferPointer? {
        if let session = f.sessionName, isEmailLike(session) { return session }
        if let name = userName, isEmailLike(name) { return name }
        return nil
    }

    /// A DNS-shaped value (`iam.amazonaws.com`), as opposed to `AWS Internal`.
    static func isDomain(_ raw: UnsafeRawBufferPointer) -> Bool {
        guard raw.count >= 3, raw.contains(UInt8(ascii: ".")), raw.first != UInt8(ascii: "."), raw.last != UInt8(ascii: ".") else { return false }
        return raw.allSatisfy { b in
            (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
        }
    }

    /// `event.category` and `event.type` by exact event name, as Elastic's pipeline sets them; other
    /// events get no category and type `info`. (Elastic's newer rows that use the `api` category, and
    /// its `delete` type for DeleteObject, are left out or corrected to stay valid ECS 8.11.)
    static func categorize(_ name: String?) -> ([String], [String]) {
        guard let name, let hit = categories[name] else { return ([], ["info"]) }
        return hit
    }

    static let categories: [String: ([String], [String])] = {
        var m: [String: ([String], [String])] = [:]
        func add(_ names: [String], _ category: [String], _ type: [String]) { for n in names { m[n] = (category, type) } }
        add(["AddUserToGroup", "AttachGroupPolicy", "DeleteGroupPolicy", "DetachGroupPolicy", "PutGroupPolicy", "RemoveUserFromGroup", "UpdateGroup"],
            ["iam"], ["group", "change"])
        add(["AttachUserPolicy", "ChangePassword", "CreateAccessKey", "CreateVirtualMFADevice", "DeactivateMFADevice", "DeleteAccessKey",
             "DeleteSSHPublicKey", "DeleteUserPermissionsBoundary", "DeleteUserPolicy", "DeleteVirtualMFADevice", "DetachUserPolicy",
             "EnableMFADevice", "PutUserPermissionsBoundary", "PutUserPolicy", "TagUser", "UntagUser", "UpdateAccessKey",
             "UpdateLoginProfile", "UpdateSSHPublicKey", "UpdateUser"],
            ["iam"], ["user", "change"])
        add(["CreateGroup"], ["iam"], ["group", "creation"])
        add(["DeleteGroup"], ["iam"], ["group", "deletion"])
        add(["CreateUser"], ["iam"], ["user", "creation"])
        add(["DeleteUser"], ["iam"], ["user", "deletion"])
        add(["CreateKeyPair"], ["iam"], ["admin", "creation"])
        add(["SetDefaultPolicyVersion", "SetSecurityTokenServicePreferences", "UpdateAccountPasswordPolicy", "UpdateRole"], ["iam"], ["admin", "change"])
        add(["GetGroup", "GetGroupPolicy", "ListAttachedGroupPolicies", "ListGroupPolicies", "ListGroups"], ["iam"], ["group", "info"])
        add(["GetUser", "GetUserPolicy", "ListAttachedUserPolicies", "ListGroupsForUser", "ListUserPolicies", "ListUserTags", "ListUsers"],
            ["iam"], ["user", "info"])
        add(["ConsoleLogin", "AssumeRole", "GetCallerIdentity"], ["authentication"], ["info"])
        add(["CreateBucket"], ["file"], ["creation"])
        add(["DeleteBucket"], ["file"], ["deletion"])
        add(["AttachRolePolicy"], ["iam"], ["change"])
        add(["CreatePolicy"], ["iam"], ["creation"])
        add(["GetPolicy", "ListAttachedRolePolicies", "ListRoles"], ["iam"], ["info"])
        add(["AuthorizeSecurityGroupIngress"], ["network"], ["access"])
        add(["DescribeLoadBalancers", "DescribeNetworkAcls", "DescribeNetworkInterfaces", "DescribeSecurityGroups", "DescribeVpcs"], ["network"], ["info"])
        add(["DescribeInstances", "DescribeVolumes", "ListInstanceAssociations"], ["host"], ["info"])
        add(["DescribeDBInstances", "ListTables"], ["database"], ["info"])
        add(["SendCommand"], ["process"], ["info"])
        add(["CreateDocument"], ["file"], ["creation"])
        add(["GetObject", "HeadObject", "ListBuckets", "ListObjects"], ["file"], ["info"])
        add(["PutObject"], ["file"], ["change"])
        add(["DeleteObject"], ["file"], ["deletion"])
        add(["CreateTopic"], ["configuration"], ["creation"])
        add(["DeleteTrail"], ["configuration"], ["deletion"])
        add(["DescribeTrails"], ["configuration"], ["info"])
        add(["Subscribe"], ["configuration"], ["change"])
        add(["CreateControlChannel", "CreateDataChannel", "OpenControlChannel", "OpenDataChannel", "StartSession"], ["session"], ["start"])
        add(["TerminateSession"], ["session"], ["end"])
        add(["ListFunctions"], ["package"], ["info"])
        return m
    }()
}

/// Distinct string values (escaped contents, slices of the record) for a keyword list, in first-seen order.
struct RawList {
    private var items: [UnsafeRawBufferPointer] = []

    mutating func add(_ value: UnsafeRawBufferPointer?) {
        guard let value, !value.isEmpty, !items.contains(where: { $0.count == value.count && memcmp($0.baseAddress!, value.baseAddress!, value.count) == 0 }) else { return }
        items.append(value)
    }

    /// Writes `"key":["a","b"]`, or nothing when empty.
    func write(_ w: inout JSONWriter, _ key: StaticString) {
        var started = false
        for item in items {
            w.nextElement(of: key, &started)
            w.out.append(UInt8(ascii: "\""))
            w.out.append(contentsOf: item)
            w.out.append(UInt8(ascii: "\""))
        }
        w.endList(started)
    }
}
