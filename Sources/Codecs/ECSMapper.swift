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
    let record: RecordView
    let eventOriginal: Bool
    var t: RecordTree { f.t }

    init(tree: RecordTree, builder: EventBuilder, record: RecordView, eventOriginal: Bool) {
        f = RecordFields(tree)
        self.builder = builder
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
        w.string("version", Self.ecsVersion)
        w.close()

        let name = f.text(f.eventName)
        let (categories, types) = Self.categorize(name)
        w.open("event")
        w.string("kind", "event")
        w.string("module", "aws")
        w.string("dataset", "aws.cloudtrail")
        if !categories.isEmpty { w.strings("category", categories) }
        w.strings("type", types)
        keyword(&w, "action", f.eventName)
        keyword(&w, "provider", f.eventSource)
        w.string("outcome", outcome)
        keyword(&w, "id", f.eventID)
        w.key("created")
        w.out.append(UInt8(ascii: "\""))
        w.out.append(contentsOf: builder.receivedTimestamp)
        w.out.append(UInt8(ascii: "\""))
        if eventOriginal { w.stringOfJSON("original", record.bytes) }
        w.close()

        w.open("cloud")
        w.string("provider", "aws")
        keyword(&w, "region", f.awsRegion)
        if let account = f.str(f.uiAccountId) ?? f.str(f.recipientAccountId) {
            w.open("account")
            w.escaped("id", t.raw(account))
            w.close()
        }
        if let source = f.text(f.eventSource), let dot = source.firstIndex(of: "."), source.hasSuffix(".amazonaws.com") {
            w.open("service")
            w.string("name", String(source[..<dot]))
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
        if let id = f.str(f.uiPrincipalId) ?? f.str(f.onBehalfOfUserId) { w.escaped("id", t.raw(id)) }
        if let userName { w.string("name", userName) }
        if let email = email(userName) { w.string("email", email) }
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

        if let agent = f.str(f.userAgent) {
            w.open("user_agent")
            w.escaped("original", t.raw(agent))
            w.close()
        }

        if let tls = f.tlsDetails {
            w.open("tls")
            if let version = f.text(t.member(tls, "tlsVersion")) {
                // "TLSv1.2" → version_protocol "tls", version "1.2"; anything else stays whole in version.
                if let v = version.firstIndex(of: "v"), v != version.startIndex, version.index(after: v) != version.endIndex {
                    w.string("version", String(version[version.index(after: v)...]))
                    w.string("version_protocol", version[..<v].lowercased())
                } else {
                    w.string("version", version)
                }
            }
            keyword(&w, "cipher", t.member(tls, "cipherSuite"))
            if let host = f.str(t.member(tls, "clientProvidedHostHeader")) {
                w.open("client")
                w.escaped("server_name", t.raw(host))
                w.close()
            }
            w.close()
        }

        w.open("error")
        keyword(&w, "code", f.errorCode)
        keyword(&w, "message", f.errorMessage)
        w.close()

        let relatedUsers = related(users: userName, target: target, newName: newName, targetID: targetID)
        let entities = relatedEntities()
        if !relatedUsers.isEmpty || !entities.isEmpty {
            w.open("related")
            if !relatedUsers.isEmpty { w.strings("user", relatedUsers) }
            if !entities.isEmpty { w.strings("entity", entities) }
            w.close()
        }

        w.open("aws")
        writeCloudTrail(&w)
        w.open("s3")
        w.open("bucket")
        w.string("name", builder.bucket)
        if !builder.bucket.contains("/") { w.string("arn", "arn:aws:s3:::" + builder.bucket) }  // not for a local copy
        w.close()
        w.open("object")
        w.string("key", builder.key)
        w.close()
        w.close()
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
        if let mfa = f.mfaAuthenticated, let text = t.scalarText(mfa) { w.string("mfa_authenticated", text) }
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
        // The string forms (JSON text here; Elastic's pipeline writes Java's Map.toString()).
        if let n = f.structured(f.requestParameters) { w.stringOfJSON("request_parameters", t.json(n)) }
        if let n = f.structured(f.responseElements) { w.stringOfJSON("response_elements", t.json(n)) }
        if let n = f.structured(f.additionalEventData) { w.stringOfJSON("additional_eventdata", t.json(n)) }
        if let n = f.structured(f.serviceEventDetails) { w.stringOfJSON("service_event_details", t.json(n)) }
        keyword(&w, "request_id", f.requestID)
        keyword(&w, "api_version", f.apiVersion)
        if let m = f.bool(f.managementEvent) { w.string("management_event", m ? "true" : "false") }
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
        flattened(&w, "request_parameters", f.requestParameters)
        flattened(&w, "response_elements", f.responseElements)
        flattened(&w, "additional_eventdata", f.additionalEventData)
        flattened(&w, "service_event_details", f.serviceEventDetails)
        flattened(&w, "insight_details", f.insightDetails)
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
        var seen: Set<[String?]> = []
        var first = true
        for element in t.elements(list) where t.kind(element) == .object {
            let arn = f.text(t.member(element, "ARN")), account = f.text(t.member(element, "accountId")), type = f.text(t.member(element, "type"))
            guard arn != nil || account != nil || type != nil, seen.insert([arn, account, type]).inserted else { continue }
            if first {
                w.key("resources")
                w.out.append(UInt8(ascii: "["))
                first = false
            } else {
                w.out.append(UInt8(ascii: ","))
            }
            var item = JSONWriter(capacity: 128)
            item.open()
            if let arn { item.string("arn", arn) }
            if let account { item.string("account_id", account) }
            if let type { item.string("type", type) }
            item.close()
            w.out.append(contentsOf: item.out)
        }
        if !first { w.out.append(UInt8(ascii: "]")) }
    }

    /// `failure` for an error code or message; a console sign-in says it in its response.
    private var outcome: StaticString {
        if f.isConsoleLogin, let r = f.responseElements, let login = t.member(r, "ConsoleLogin"), let s = f.text(login) {
            return s.lowercased() == "success" ? "success" : "failure"
        }
        return f.str(f.errorCode) != nil || f.str(f.errorMessage) != nil ? "failure" : "success"
    }

    /// `userName`, replaced by the issuer's name (the role) for assumed roles and federated users.
    private var ecsUserName: String? {
        if let type = f.uiType, t.stringEquals(type, "AssumedRole") || t.stringEquals(type, "FederatedUser"),
            let issuer = f.text(f.issuerUserName)
        {
            return issuer
        }
        if let name = f.text(f.uiUserName) { return name }
        if let extra = f.additionalEventData, let type = f.eventType, t.stringEquals(type, "AwsServiceEvent") || f.text(f.eventName) == "UserAuthentication" {
            return f.text(t.member(extra, "UserName"))
        }
        return nil
    }

    /// An STS session named like an email address, else a user name that is one.
    private func email(_ userName: String?) -> String? {
        if let session = f.assumedRoleSession ?? federatedSession, let at = session.firstIndex(of: "@"), at != session.startIndex {
            return session
        }
        if let name = userName, let at = name.firstIndex(of: "@"), at != name.startIndex { return name }
        return nil
    }

    private var federatedSession: String? {
        guard let arn = f.text(f.uiArn), arn.contains(":federated-user/") else { return nil }
        return arn.split(separator: "/").last.map(String.init)
    }

    private func related(users userName: String?, target: Int?, newName: Int?, targetID: Int?) -> [String] {
        var out: [String] = []
        func add(_ s: String?) { if let s, !s.isEmpty, !out.contains(s) { out.append(s) } }
        add(f.text(f.uiUserName))
        add(userName)
        add(f.text(f.uiPrincipalId))
        add(f.text(target))
        add(f.text(newName))
        add(f.text(targetID))
        if let session = f.assumedRoleSession ?? federatedSession {
            add(session)
            if let at = session.firstIndex(of: "@"), at != session.startIndex { add(String(session[..<at])) }
        }
        return out
    }

    private func relatedEntities() -> [String] {
        var out: [String] = []
        func add(_ node: Int?) { if let s = f.text(node), !out.contains(s) { out.append(s) } }
        add(f.uiArn)
        add(f.uiPrincipalId)
        add(f.issuerArn)
        add(f.issuerUserName)
        add(f.uiAccessKeyId)
        if let list = f.resources { for e in t.elements(list) { add(t.member(e, "ARN")) } }
        if let p = f.requestParameters {
            add(t.member(p, "roleArn"))
            add(t.member(p, "roleSessionName"))
            add(t.member(p, "userName"))
        }
        return out
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
