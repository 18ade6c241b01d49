import Stages

/// CloudTrail → OCSF 1.1.0, following Amazon Security Lake's CloudTrail mapping (source version 2):
/// API Activity (6003) for API calls, Authentication (3002) for console sign-ins. What no OCSF attribute
/// holds goes to `unmapped`, under dotted CloudTrail names with string values, as Security Lake does.
struct OCSFMapper {
    static let schemaVersion: StaticString = "1.1.0"

    let f: RecordFields
    let builder: EventBuilder
    let object: ObjectContext
    let record: RecordView
    let t: RecordTree

    init(tree: RecordTree, builder: EventBuilder, object: ObjectContext, record: RecordView) {
        f = RecordFields(tree)
        t = tree
        self.builder = builder
        self.object = object
        self.record = record
    }

    private func keyword(_ w: inout JSONWriter, _ key: StaticString, _ node: Int?) {
        if let s = f.str(node) { w.escaped(key, t.raw(s)) }
    }

    /// Top-level CloudTrail fields an OCSF attribute holds; the others go to `unmapped`.
    private static let mapped: Set<String> = [
        "eventTime", "eventSource", "eventName", "requestID", "requestParameters", "responseElements", "errorCode",
        "errorMessage", "apiVersion", "sourceIPAddress", "vpcEndpointId", "userAgent", "userIdentity", "awsRegion",
        "recipientAccountId", "eventID", "eventVersion", "eventType", "eventCategory", "resources", "sharedEventID",
    ]

    mutating func write(into w: inout JSONWriter) -> EventInfo {
        var timestamp: [UInt8] = []
        let fallback = builder.appendTimestamp(record, to: &timestamp)
        let millis = timestamp.withUnsafeBytes { RFC3339.millis($0) } ?? 0
        let login = f.isConsoleLogin
        let failed = f.failed
        let verb = Verb.of(f.str(f.eventName).flatMap { t.plainString($0) }, readOnly: f.bool(f.readOnly))
        let (activityID, activityName): (Int64, StaticString) =
            if login { (1, "Logon") } else {
                switch verb {
                case .create: (1, "Create")
                case .read: (2, "Read")
                case .update: (3, "Update")
                case .delete: (4, "Delete")
                case .other: (99, "Other")
                }
            }
        let classUID: Int64 = login ? 3002 : 6003

        w.open()
        w.int("time", millis)
        w.key("time_dt")
        w.out.append(UInt8(ascii: "\""))
        w.out.append(contentsOf: timestamp)
        w.out.append(UInt8(ascii: "\""))
        w.int("class_uid", classUID)
        w.constant("class_name", login ? "Authentication" : "API Activity")
        w.int("category_uid", login ? 3 : 6)
        w.constant("category_name", login ? "Identity & Access Management" : "Application Activity")
        w.int("activity_id", activityID)
        w.constant("activity_name", activityName)
        w.int("type_uid", classUID * 100 + activityID)
        w.string("type_name", (login ? "Authentication: " : "API Activity: ") + activityName.description)
        w.int("severity_id", 1)
        w.constant("severity", "Informational")
        w.int("status_id", failed ? 2 : 1)
        w.constant("status", failed ? "Failure" : "Success")
        keyword(&w, "status_code", f.errorCode)
        keyword(&w, "status_detail", f.errorMessage)

        w.open("metadata")
        keyword(&w, "uid", f.eventID)
        w.constant("version", Self.schemaVersion)
        w.open("product")
        w.constant("name", "CloudTrail")
        w.constant("vendor_name", "AWS")
        keyword(&w, "version", f.eventVersion)
        w.open("feature")
        keyword(&w, "name", f.eventCategory)
        w.close()
        w.close()
        keyword(&w, "event_code", f.eventType)
        w.constant("log_provider", "CloudTrail")
        object.uri.withUnsafeBytes { w.escaped("log_name", $0) }  // the log file the event came from
        keyword(&w, "correlation_uid", f.sharedEventID)
        keyword(&w, "original_time", f.eventTime)
        w.strings("profiles", ["cloud", "datetime"])
        if fallback { w.strings("labels", [EventBuilder.fallbackTag]) }
        w.close()

        w.open("cloud")
        w.constant("provider", "AWS")
        keyword(&w, "region", f.awsRegion)
        w.open("account")
        keyword(&w, "uid", f.recipientAccountId)
        w.close()
        w.close()

        w.open("api")
        keyword(&w, "operation", f.eventName)
        w.open("service")
        keyword(&w, "name", f.eventSource)
        w.close()
        keyword(&w, "version", f.apiVersion)
        w.open("request")
        keyword(&w, "uid", f.requestID)
        if let p = f.structured(f.requestParameters) { w.raw("data", t.json(p)) }
        w.close()
        w.open("response")
        keyword(&w, "error", f.errorCode)
        keyword(&w, "message", f.errorMessage)
        if let r = f.structured(f.responseElements) { w.raw("data", t.json(r)) }
        w.close()
        w.close()

        w.open("actor")
        writeUser(&w, "user")
        w.open("session")
        if let created = f.str(f.sessionCreationDate), let ms = RFC3339.millis(t.raw(created)) {
            w.int("created_time", ms)
        }
        if let mfa = f.bool(f.mfaAuthenticated) { w.bool("is_mfa", mfa) }
        keyword(&w, "issuer", f.issuerArn)
        w.close()
        keyword(&w, "invoked_by", f.uiInvokedBy)
        w.open("idp")
        let web = f.userIdentity.flatMap { t.path($0, ["sessionContext", "webIdFederationData"]) }
        keyword(&w, "name", f.str(web.flatMap { t.member($0, "federatedProvider") }) ?? f.str(f.userIdentity.flatMap { t.member($0, "identityProvider") }))
        w.close()
        w.close()

        if login {
            // Authentication: the subject is the user who signed in.
            writeUser(&w, "user")
            if let extra = f.additionalEventData {
                if let m = f.str(t.member(extra, "MFAUsed")) { w.bool("is_mfa", t.stringEquals(m, "Yes")) }
                w.open("dst_endpoint")
                keyword(&w, "svc_name", t.member(extra, "LoginTo"))
                w.close()
            }
        }

        w.open("src_endpoint")
        if let address = f.str(f.sourceIPAddress) {
            if IPAddress.isIP(t.raw(address)) { w.escaped("ip", t.raw(address)) } else { w.escaped("domain", t.raw(address)) }
        }
        keyword(&w, "uid", f.vpcEndpointId)
        w.close()

        w.open("http_request")
        keyword(&w, "user_agent", f.userAgent)
        w.close()

        writeResources(&w)
        writeObservables(&w)
        writeUnmapped(&w)
        w.close()
        return EventInfo(id: builder.id(record), timestampFallback: fallback, timestamp: timestamp)
    }

    private func writeUser(_ w: inout JSONWriter, _ key: StaticString) {
        w.open(key)
        keyword(&w, "type", f.uiType)
        if let type = f.text(f.uiType) { w.int("type_id", Self.userTypeID(type)) }
        keyword(&w, "uid", f.uiArn)
        keyword(&w, "uid_alt", f.uiPrincipalId)
        if let name = f.actorName { w.escaped("name", name) }
        keyword(&w, "credential_uid", f.uiAccessKeyId)
        if f.str(f.uiAccountId) != nil {
            w.open("account")
            keyword(&w, "uid", f.uiAccountId)
            w.constant("type", "AWS Account")
            w.int("type_id", 10)
            w.close()
        }
        w.close()
    }

    /// OCSF user types: 1 User, 2 Admin, 3 System, 99 Other.
    static func userTypeID(_ type: String) -> Int64 {
        switch type {
        case "IAMUser", "AssumedRole", "FederatedUser", "IdentityCenterUser", "SAMLUser", "WebIdentityUser", "Unknown": type == "Unknown" ? 0 : 1
        case "Root": 2
        case "AWSService", "AWSAccount": 3
        default: 99
        }
    }

    private func writeResources(_ w: inout JSONWriter) {
        guard let list = f.resources, t.kind(list) == .array else { return }
        var started = false
        for element in t.elements(list) where t.kind(element) == .object {
            var item = JSONWriter(capacity: 160)
            item.open()
            if let arn = f.str(t.member(element, "ARN")) { item.escaped("uid", t.raw(arn)) }
            if let type = f.str(t.member(element, "type")) { item.escaped("type", t.raw(type)) }
            item.open("owner")
            item.open("account")
            keyword(&item, "uid", t.member(element, "accountId"))
            item.close()
            item.close()
            item.close()
            guard item.out.count > 2 else { continue }
            w.nextElement(of: "resources", &started)
            w.out.append(contentsOf: item.out)
        }
        w.endList(started)
    }

    /// The source IP (type 2, IP Address) and the actor's name (type 4, User Name).
    private func writeObservables(_ w: inout JSONWriter) {
        var started = false
        func observable(_ name: StaticString, _ type: StaticString, _ typeID: Int64, _ value: UnsafeRawBufferPointer) {
            w.nextElement(of: "observables", &started)
            var item = JSONWriter(capacity: 96 + value.count)
            item.open()
            item.constant("name", name)
            item.constant("type", type)
            item.int("type_id", typeID)
            item.escaped("value", value)
            item.close()
            w.out.append(contentsOf: item.out)
        }
        if let ip = f.str(f.sourceIPAddress), IPAddress.isIP(t.raw(ip)) { observable("src_endpoint.ip", "IP Address", 2, t.raw(ip)) }
        if let user = f.actorName { observable("actor.user.name", "User Name", 4, user) }
        w.endList(started)
    }

    /// Everything no attribute holds, flattened to dotted names with string values.
    private func writeUnmapped(_ w: inout JSONWriter) {
        w.open("unmapped")
        for (key, value) in t.members(RecordTree.root) {
            guard let name = t.string(key) else { continue }
            if Self.mapped.contains(name) {
                if name == "userIdentity" { flattenUserIdentity(&w, value) }
                continue
            }
            flatten(&w, name, value)
        }
        w.close()
    }

    /// The parts of `userIdentity` no attribute holds (the issuer's name, web identity data, …).
    private func flattenUserIdentity(_ w: inout JSONWriter, _ ui: Int) {
        let held: Set<String> = ["type", "arn", "principalId", "accessKeyId", "accountId", "userName", "invokedBy", "identityProvider"]
        for (key, value) in t.members(ui) {
            guard let name = t.string(key), !held.contains(name) else { continue }
            if name == "sessionContext" {
                for (k2, v2) in t.members(value) {
                    guard let n2 = t.string(k2) else { continue }
                    if n2 == "attributes" {
                        for (k3, v3) in t.members(v2) {
                            guard let n3 = t.string(k3), n3 != "creationDate", n3 != "mfaAuthenticated" else { continue }
                            flatten(&w, "userIdentity.sessionContext.attributes.\(n3)", v3)
                        }
                    } else if n2 == "sessionIssuer" {
                        if let n = f.str(t.member(v2, "userName")) { flatten(&w, "userIdentity.sessionContext.sessionIssuer.userName", n) }
                    } else {
                        flatten(&w, "userIdentity.sessionContext.\(n2)", v2)
                    }
                }
            } else {
                flatten(&w, "userIdentity.\(name)", value)
            }
        }
    }

    /// Writes scalars as `"path":"text"`; objects recurse; arrays are kept as their JSON text.
    private func flatten(_ w: inout JSONWriter, _ path: String, _ node: Int) {
        switch t.kind(node) {
        case .object:
            for (key, value) in t.members(node) {
                if let name = t.string(key) { flatten(&w, path + "." + name, value) }
            }
        case .null:
            return
        case .array:
            var text: [UInt8] = []
            JSONText.appendOneLine(t.json(node), to: &text)
            member(&w, path) { w in w.out.append(UInt8(ascii: "\"")); text.withUnsafeBytes { JSONText.appendEscaped($0, to: &w.out) }; w.out.append(UInt8(ascii: "\"")) }
        case .string:
            member(&w, path) { $0.out.append(contentsOf: t.json(node)) }
        case .number, .true, .false:
            member(&w, path) { $0.out.append(UInt8(ascii: "\"")); $0.out.append(contentsOf: t.raw(node)); $0.out.append(UInt8(ascii: "\"")) }
        }
    }

    private func member(_ w: inout JSONWriter, _ path: String, _ value: (inout JSONWriter) -> Void) {
        w.dynamicKey(path)
        value(&w)
    }
}
