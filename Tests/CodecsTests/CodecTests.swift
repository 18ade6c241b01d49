import Foundation
import Testing

@testable import Codecs
@testable import Stages

let key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/28/123456789012_CloudTrail_us-east-1_20261128T2205Z_abc.json.gz"

/// Splits `{"Records":[records…]}` and encodes each record; nil entries are records the filter dropped.
func encode(_ records: [String], _ options: CodecOptions, filter: RecordFilter? = nil) throws -> [(text: String, info: EventInfo, json: [String: Any])?] {
    let body = Array(("{\"Records\":[" + records.joined(separator: ",") + "]}").utf8)
    var splitter = RecordSplitter()
    var encoder = EventEncoder(options: options, filter: filter, bucket: "trail-bucket", key: key, receivedAt: 1_764_367_200_000)
    var out: [(String, EventInfo, [String: Any])?] = []
    var failure: (any Error)?
    try body.withUnsafeBytes { b in
        try splitter.push(b) { r in
            var bytes: [UInt8] = []
            guard let info = encoder.encode(r, to: &bytes) else { return out.append(nil) }
            do {
                let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any], "\(String(decoding: bytes, as: UTF8.self))")
                out.append((String(decoding: bytes, as: UTF8.self), info, json))
            } catch { failure = error }
        }
    }
    try splitter.finish()
    if let failure { throw failure }
    return out
}

func one(_ record: String, _ kind: CodecKind, eventOriginal: Bool = false) throws -> [String: Any] {
    try #require(try encode([record], CodecOptions(kind: kind, eventOriginal: eventOriginal)).first??.json)
}

/// The value at a dotted path of nested objects.
func at(_ json: [String: Any], _ path: String) -> Any? {
    var current: Any? = json
    for part in path.split(separator: ".") { current = (current as? [String: Any])?[String(part)] }
    return current
}

/// Generated records covering the shapes the mappings care about.
enum Records {
    static func base(_ fields: String) -> String {
        #"{"eventVersion":"1.09","eventTime":"2026-11-28T22:07:49Z","awsRegion":"eu-west-1","requestID":"req-1","eventID":"11111111-2222-3333-4444-555555555555","eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","#
            + fields + "}"
    }
    static let consoleLoginSuccess = base(#""userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","userName":"alice"},"eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"203.0.113.7","userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/","MobileVersion":"No","MFAUsed":"Yes"},"readOnly":false"#)
    static let consoleLoginFailure = base(#""userIdentity":{"type":"IAMUser","accountId":"123456789012","accessKeyId":"","userName":"mallory"},"eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","sourceIPAddress":"2001:db8::1","userAgent":"curl/8","errorMessage":"Failed authentication","requestParameters":null,"responseElements":{"ConsoleLogin":"Failure"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/","MobileVersion":"No","MFAUsed":"No"},"readOnly":false"#)
    static let assumedRoleEmail = base(#""userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:jane.doe@example.com","arn":"arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin/jane.doe@example.com","accountId":"123456789012","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::123456789012:role/AWSReservedSSO_Admin","accountId":"123456789012","userName":"AWSReservedSSO_Admin"},"webIdFederationData":{},"attributes":{"creationDate":"2026-11-28T21:00:00Z","mfaAuthenticated":"true"}}},"eventSource":"iam.amazonaws.com","eventName":"CreateUser","sourceIPAddress":"198.51.100.4","userAgent":"aws-cli/2.15","requestParameters":{"userName":"bob"},"responseElements":{"user":{"userName":"bob","userId":"AIDABOB","arn":"arn:aws:iam::123456789012:user/bob"}},"readOnly":false,"resources":[{"ARN":"arn:aws:iam::123456789012:user/bob","accountId":"123456789012","type":"AWS::IAM::User"},{"ARN":"arn:aws:iam::123456789012:user/bob","accountId":"123456789012","type":"AWS::IAM::User"}],"tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"iam.amazonaws.com"}"#)
    static let servicePrincipal = base(#""userIdentity":{"type":"AWSService","invokedBy":"cloudtrail.amazonaws.com"},"eventSource":"kms.amazonaws.com","eventName":"Decrypt","sourceIPAddress":"cloudtrail.amazonaws.com","userAgent":"cloudtrail.amazonaws.com","requestParameters":{"encryptionContext":{"aws:cloudtrail:arn":"arn:aws:cloudtrail:eu-west-1:123456789012:trail/t"}},"responseElements":null,"readOnly":true,"sharedEventID":"shared-1","resources":[{"accountId":"123456789012","type":"AWS::KMS::Key","ARN":"arn:aws:kms:eu-west-1:123456789012:key/k"}]"#)
    static let accessDenied = base(#""userIdentity":{"type":"IAMUser","principalId":"AIDAEVE","arn":"arn:aws:iam::123456789012:user/eve","accountId":"123456789012","accessKeyId":"AKIAEVE","userName":"eve"},"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket","sourceIPAddress":"AWS Internal","userAgent":"[S3Console/0.4]","errorCode":"AccessDenied","errorMessage":"Access Denied","requestParameters":{"bucketName":"prod-logs","Host":"prod-logs.s3.amazonaws.com"},"responseElements":null,"readOnly":false,"vpcEndpointId":"vpce-1234""#)
    static let updateUser = base(#""userIdentity":{"type":"Root","principalId":"123456789012","arn":"arn:aws:iam::123456789012:root","accountId":"123456789012"},"eventSource":"iam.amazonaws.com","eventName":"UpdateUser","sourceIPAddress":"192.0.2.1","userAgent":"console.amazonaws.com","requestParameters":{"userName":"bob","newUserName":"robert"},"responseElements":null,"readOnly":false"#)
    static let insight = #"{"eventVersion":"1.08","eventTime":"2026-11-28T22:07:00Z","awsRegion":"us-east-1","eventID":"insight-1","eventType":"AwsCloudTrailInsight","recipientAccountId":"123456789012","sharedEventID":"s-1","insightDetails":{"state":"Start","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","insightType":"ApiCallRateInsight"},"eventCategory":"Insight"}"#
    static let minimal = #"{"eventID":"min-1"}"#
    static let all = [consoleLoginSuccess, consoleLoginFailure, assumedRoleEmail, servicePrincipal, accessDenied, updateUser, insight, minimal]

    /// The real samples in ../shared/testdata (the malformed one excluded): every record of each file.
    static func samples() throws -> [String] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/testdata/cloudtrail/stratus-red-team")
        let shared = ProcessInfo.processInfo.environment["CTB_SHARED_DIR"].map { URL(fileURLWithPath: $0).appendingPathComponent("testdata/cloudtrail/stratus-red-team") } ?? dir
        var out: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: shared.path).sorted() where name.hasSuffix(".json") && !name.contains("ec2-user-data") {
            let data = try Data(contentsOf: shared.appendingPathComponent(name))
            let doc = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            for r in try #require(doc["Records"] as? [Any]) {
                out.append(String(decoding: try JSONSerialization.data(withJSONObject: r), as: UTF8.self))
            }
        }
        return out
    }
}

/// ECS field types (ECS 8.11 and Elastic's `aws.cloudtrail` fields) for every field the codec writes.
enum ECSTypes {
    static let fields: [String: String] = [
        "@timestamp": "date", "ecs.version": "keyword", "tags": "keyword",
        "event.kind": "keyword", "event.module": "keyword", "event.dataset": "keyword", "event.category": "keyword",
        "event.type": "keyword", "event.action": "keyword", "event.provider": "keyword", "event.outcome": "keyword",
        "event.id": "keyword", "event.created": "date", "event.original": "keyword",
        "cloud.provider": "keyword", "cloud.region": "keyword", "cloud.account.id": "keyword", "cloud.service.name": "keyword",
        "source.address": "keyword", "source.ip": "ip", "source.domain": "keyword",
        "user.id": "keyword", "user.name": "keyword", "user.email": "keyword", "user.target.id": "keyword",
        "user.target.name": "keyword", "user.changes.name": "keyword", "group.id": "keyword", "group.name": "keyword",
        "user_agent.original": "keyword", "tls.version": "keyword", "tls.version_protocol": "keyword", "tls.cipher": "keyword",
        "tls.client.server_name": "keyword", "error.code": "keyword", "error.message": "text",
        "related.user": "keyword", "related.entity": "keyword",
        "aws.s3.bucket.name": "keyword", "aws.s3.bucket.arn": "keyword", "aws.s3.object.key": "keyword",
        "aws.cloudtrail.event_version": "keyword", "aws.cloudtrail.event_category": "keyword", "aws.cloudtrail.event_type": "keyword",
        "aws.cloudtrail.user_identity.type": "keyword", "aws.cloudtrail.user_identity.arn": "keyword",
        "aws.cloudtrail.user_identity.access_key_id": "keyword", "aws.cloudtrail.user_identity.invoked_by": "keyword",
        "aws.cloudtrail.user_identity.session_context.mfa_authenticated": "keyword",
        "aws.cloudtrail.user_identity.session_context.creation_date": "date",
        "aws.cloudtrail.user_identity.session_context.session_issuer.type": "keyword",
        "aws.cloudtrail.user_identity.session_context.session_issuer.principal_id": "keyword",
        "aws.cloudtrail.user_identity.session_context.session_issuer.arn": "keyword",
        "aws.cloudtrail.user_identity.session_context.session_issuer.account_id": "keyword",
        "aws.cloudtrail.error_code": "keyword", "aws.cloudtrail.error_message": "keyword",
        "aws.cloudtrail.request_parameters": "keyword", "aws.cloudtrail.response_elements": "keyword",
        "aws.cloudtrail.additional_eventdata": "keyword", "aws.cloudtrail.service_event_details": "keyword",
        "aws.cloudtrail.request_id": "keyword", "aws.cloudtrail.api_version": "keyword", "aws.cloudtrail.management_event": "keyword",
        "aws.cloudtrail.read_only": "boolean", "aws.cloudtrail.resources.arn": "keyword", "aws.cloudtrail.resources.account_id": "keyword",
        "aws.cloudtrail.resources.type": "keyword", "aws.cloudtrail.recipient_account_id": "keyword",
        "aws.cloudtrail.shared_event_id": "keyword", "aws.cloudtrail.vpc_endpoint_id": "keyword",
        "aws.cloudtrail.session_credential_from_console": "keyword",
        "aws.cloudtrail.console_login.additional_eventdata.mobile_version": "boolean",
        "aws.cloudtrail.console_login.additional_eventdata.login_to": "keyword",
        "aws.cloudtrail.console_login.additional_eventdata.mfa_used": "boolean",
        "aws.cloudtrail.flattened.request_parameters": "flattened", "aws.cloudtrail.flattened.response_elements": "flattened",
        "aws.cloudtrail.flattened.additional_eventdata": "flattened", "aws.cloudtrail.flattened.service_event_details": "flattened",
        "aws.cloudtrail.flattened.insight_details": "flattened",
    ]

    /// Problems with `event`: fields ECS does not define here, and values that do not fit their type.
    static func problems(_ event: [String: Any]) -> [String] {
        var out: [String] = []
        func visit(_ path: String, _ value: Any) {
            if let type = fields[path] {
                let values = (value as? [Any]) ?? [value]
                if type != "flattened" && value is [Any] && (value as! [Any]).isEmpty { out.append("\(path): empty list") }
                for v in values where !fits(v, type) { out.append("\(path): \(v) is not a \(type)") }
                return
            }
            if let object = value as? [String: Any] {
                if object.isEmpty { out.append("\(path): empty object") }
                for (k, v) in object { visit(path.isEmpty ? k : path + "." + k, v) }
            } else if let list = value as? [Any], list.allSatisfy({ $0 is [String: Any] }) {
                for item in list { visit(path, item) }
            } else {
                out.append("\(path): not an ECS field of this mapping")
            }
        }
        visit("", event)
        return out
    }

    static func fits(_ v: Any, _ type: String) -> Bool {
        switch type {
        case "keyword", "text": return v is String && !(v as! String).isEmpty
        case "boolean": return isBool(v)
        case "long": return v is Int && !isBool(v)
        case "date":
            guard let s = v as? String else { return false }
            return Array(s.utf8).withUnsafeBytes { RFC3339.millis($0) } != nil
        case "ip":
            guard let s = v as? String else { return false }
            return Array(s.utf8).withUnsafeBytes { IPAddress.isIP($0) }
        case "flattened": return v is [String: Any]
        default: return false
        }
    }

    static func isBool(_ v: Any) -> Bool {
        if let n = v as? NSNumber { return String(cString: n.objCType) == "c" }
        return v is Bool
    }
}

@Suite("Codecs")
struct CodecTests {
    @Test func theDefaultCodecIsTodaysEventByteForByte() throws {
        var records = Records.all
        records += try Records.samples()
        let encoded = try encode(records, CodecOptions())
        let builder = EventBuilder(bucket: "trail-bucket", key: key, receivedAt: 1_764_367_200_000)
        for (i, record) in records.enumerated() {
            var expected: [UInt8] = []
            let bytes = Array(record.utf8)
            let info = bytes.withUnsafeBytes { b in
                var tree = RecordTree()
                let parsed = tree.parse(b)
                #expect(parsed)
                let time = tree.member(0, "eventTime").map { Int(tree.nodes[$0].start)..<Int(tree.nodes[$0].end) }
                let id = tree.member(0, "eventID").map { Int(tree.nodes[$0].start)..<Int(tree.nodes[$0].end) }
                return builder.append(RecordView(index: UInt64(i), bytes: b, eventTime: time, eventID: id), to: &expected)
            }
            #expect(encoded[i]?.text == String(decoding: expected, as: UTF8.self))
            #expect(encoded[i]?.info == info)
            #expect(encoded[i]?.text.contains(record) == true, "the record verbatim")
        }
    }

    @Test func aPrettyPrintedRecordBecomesOneLine() throws {
        let pretty = "{\n  \"eventTime\" : \"2026-11-28T22:07:49Z\",\n\t\"eventID\": \"p-1\",\r\n  \"requestParameters\": {\"a b\": \"x\\n y\"}\n}"
        for kind in CodecKind.allCases {
            let event = try #require(try encode([pretty], CodecOptions(kind: kind)).first??.text)
            #expect(!event.contains("\n") && !event.contains("\r"), "\(kind): \(event)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])
            let kept: Any?
            switch kind {
            case .cloudtrail: kept = at(json, "cloudtrail.requestParameters")
            case .ecs: kept = at(json, "aws.cloudtrail.flattened.request_parameters")
            case .ocsf: kept = at(json, "api.request.data")
            case .raw: kept = at(json, "requestParameters")
            case .elasticIntegration:
                let message = try JSONSerialization.jsonObject(with: Data((at(json, "message") as? String ?? "").utf8)) as? [String: Any]
                kept = message.flatMap { at($0, "requestParameters") }
            }
            #expect((kept as? [String: String]) == ["a b": "x\n y"], "\(kind): strings kept as they are: \(event)")
        }
    }

    /// `raw` (Splunk's aws:cloudtrail): the record byte for byte and nothing else; its time and id
    /// beside it, as every codec derives them; with a filter, the record minus the dropped fields.
    @Test func rawIsTheRecordWithItsTimeBeside() throws {
        let encoded = try encode(Records.all, CodecOptions(kind: .raw))
        let cloudtrail = try encode(Records.all, CodecOptions())
        for (i, record) in Records.all.enumerated() {
            let e = try #require(encoded[i])
            #expect(e.text == record, "byte for byte")
            #expect(e.info.id == cloudtrail[i]?.info.id)
            let stamp = try #require(cloudtrail[i]?.json["@timestamp"] as? String)
            #expect(e.info.timestamp.map { String(decoding: $0, as: UTF8.self) } == stamp && e.info.timestampFallback == cloudtrail[i]?.info.timestampFallback)
        }
        #expect(encoded[0]?.info.timestamp.map { String(decoding: $0, as: UTF8.self) } == "2026-11-28T22:07:49.000Z")
        let dropped = try encode([Records.assumedRoleEmail], CodecOptions(kind: .raw), filter: RecordFilter(dropFields: ["tlsDetails", "userIdentity.sessionContext"]))
        let json = try #require(dropped.first??.json)
        #expect(json["tlsDetails"] == nil && at(json, "userIdentity.sessionContext") == nil && at(json, "userIdentity.arn") != nil && json["@timestamp"] == nil)
    }

    @Test func ecsFieldsOfAConsoleSignIn() throws {
        let ok = try one(Records.consoleLoginSuccess, .ecs)
        #expect(at(ok, "@timestamp") as? String == "2026-11-28T22:07:49.000Z")
        #expect(at(ok, "event.action") as? String == "ConsoleLogin")
        #expect(at(ok, "event.provider") as? String == "signin.amazonaws.com")
        #expect(at(ok, "event.outcome") as? String == "success")
        #expect(at(ok, "event.category") as? [String] == ["authentication"])
        #expect(at(ok, "event.type") as? [String] == ["info"])
        #expect(at(ok, "event.kind") as? String == "event" && at(ok, "event.dataset") as? String == "aws.cloudtrail")
        #expect(at(ok, "event.id") as? String == "11111111-2222-3333-4444-555555555555")
        #expect(at(ok, "event.created") as? String == "2025-11-28T22:00:00.000Z")
        #expect(at(ok, "user.name") as? String == "alice" && at(ok, "user.id") as? String == "AIDAEXAMPLE")
        #expect(at(ok, "source.ip") as? String == "203.0.113.7" && at(ok, "source.address") as? String == "203.0.113.7")
        #expect(at(ok, "cloud.account.id") as? String == "123456789012" && at(ok, "cloud.region") as? String == "eu-west-1")
        #expect(at(ok, "aws.cloudtrail.console_login.additional_eventdata.mfa_used") as? Bool == true)
        #expect(at(ok, "aws.cloudtrail.console_login.additional_eventdata.mobile_version") as? Bool == false)
        #expect(at(ok, "aws.cloudtrail.console_login.additional_eventdata.login_to") as? String == "https://console.aws.amazon.com/")
        #expect(at(ok, "event.original") == nil, "event.original is opt-in")
        let failed = try one(Records.consoleLoginFailure, .ecs)
        #expect(at(failed, "event.outcome") as? String == "failure")
        #expect(at(failed, "source.ip") as? String == "2001:db8::1")
        #expect(at(failed, "error.message") as? String == "Failed authentication")
        #expect(at(failed, "aws.cloudtrail.user_identity.access_key_id") == nil, "an empty string is left out")
        #expect(at(failed, "aws.cloudtrail.console_login.additional_eventdata.mfa_used") as? Bool == false)
    }

    @Test func ecsFieldsOfAnAssumedRoleAndOfIAMChanges() throws {
        let e = try one(Records.assumedRoleEmail, .ecs, eventOriginal: true)
        // Elastic's rule: an assumed role's user.name is the role (the session issuer), the email session is user.email.
        #expect(at(e, "user.name") as? String == "AWSReservedSSO_Admin")
        #expect(at(e, "user.email") as? String == "jane.doe@example.com")
        #expect(at(e, "user.id") as? String == "AROAEXAMPLE:jane.doe@example.com")
        #expect(at(e, "user.target.name") as? String == "bob" && at(e, "user.target.id") as? String == "AIDABOB")
        #expect(at(e, "event.category") as? [String] == ["iam"] && at(e, "event.type") as? [String] == ["user", "creation"])
        #expect(at(e, "tls.version") as? String == "1.3" && at(e, "tls.version_protocol") as? String == "tls")
        #expect(at(e, "tls.cipher") as? String == "TLS_AES_128_GCM_SHA256" && at(e, "tls.client.server_name") as? String == "iam.amazonaws.com")
        #expect(at(e, "aws.cloudtrail.user_identity.session_context.mfa_authenticated") as? String == "true")
        #expect(at(e, "aws.cloudtrail.user_identity.session_context.creation_date") as? String == "2026-11-28T21:00:00.000Z")
        #expect(at(e, "aws.cloudtrail.user_identity.session_context.session_issuer.arn") as? String == "arn:aws:iam::123456789012:role/AWSReservedSSO_Admin")
        #expect(at(e, "aws.cloudtrail.read_only") as? Bool == false && at(e, "aws.cloudtrail.management_event") as? String == "true")
        let resources = try #require(at(e, "aws.cloudtrail.resources") as? [[String: String]])
        #expect(resources == [["arn": "arn:aws:iam::123456789012:user/bob", "account_id": "123456789012", "type": "AWS::IAM::User"]], "duplicates dropped")
        // request_parameters as a string and as an object.
        let text = try #require(at(e, "aws.cloudtrail.request_parameters") as? String)
        #expect((try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String]) == ["userName": "bob"])
        #expect(at(e, "aws.cloudtrail.flattened.request_parameters") as? [String: String] == ["userName": "bob"])
        #expect((at(e, "related.user") as? [String])?.contains("jane.doe") == true)
        #expect((at(e, "related.entity") as? [String])?.contains("arn:aws:iam::123456789012:user/bob") == true)
        let original = try #require(at(e, "event.original") as? String)
        #expect(original == Records.assumedRoleEmail)
        let renamed = try one(Records.updateUser, .ecs)
        #expect(at(renamed, "user.changes.name") as? String == "robert" && at(renamed, "user.target.name") as? String == "bob")
        #expect(at(renamed, "event.type") as? [String] == ["user", "change"])
        #expect(at(renamed, "aws.cloudtrail.user_identity.type") as? String == "Root")
    }

    @Test func ecsFieldsOfAServicePrincipalAnErrorAndAnInsight() throws {
        let s = try one(Records.servicePrincipal, .ecs)
        #expect(at(s, "source.address") as? String == "cloudtrail.amazonaws.com")
        #expect(at(s, "source.ip") == nil, "a service principal is not an IP")
        #expect(at(s, "source.domain") as? String == "cloudtrail.amazonaws.com")
        #expect(at(s, "aws.cloudtrail.user_identity.invoked_by") as? String == "cloudtrail.amazonaws.com")
        #expect(at(s, "cloud.account.id") as? String == "123456789012", "recipientAccountId when userIdentity has no account")
        #expect(at(s, "aws.cloudtrail.shared_event_id") as? String == "shared-1" && at(s, "aws.cloudtrail.read_only") as? Bool == true)
        let d = try one(Records.accessDenied, .ecs)
        #expect(at(d, "event.outcome") as? String == "failure" && at(d, "error.code") as? String == "AccessDenied")
        #expect(at(d, "aws.cloudtrail.error_code") as? String == "AccessDenied" && at(d, "aws.cloudtrail.error_message") as? String == "Access Denied")
        #expect(at(d, "source.address") as? String == "AWS Internal" && at(d, "source.domain") == nil && at(d, "source.ip") == nil)
        #expect(at(d, "aws.cloudtrail.vpc_endpoint_id") as? String == "vpce-1234")
        #expect(at(d, "event.category") as? [String] == ["file"] && at(d, "event.type") as? [String] == ["deletion"])
        let i = try one(Records.insight, .ecs)
        #expect(at(i, "aws.cloudtrail.event_type") as? String == "AwsCloudTrailInsight")
        #expect((at(i, "aws.cloudtrail.flattened.insight_details") as? [String: Any])?["insightType"] as? String == "ApiCallRateInsight")
        let m = try one(Records.minimal, .ecs)
        #expect(at(m, "@timestamp") as? String == "2026-11-28T22:05:00.000Z", "the key's time (fallback rule)")
        #expect(at(m, "tags") as? [String] == [EventBuilder.fallbackTag])
        #expect(at(m, "user") == nil && at(m, "source") == nil && at(m, "tls") == nil, "no empty sections")
    }

    @Test func ecsEventsValidateAgainstTheFieldTypes() throws {
        let records = Records.all + (try Records.samples())
        for (i, e) in try encode(records, CodecOptions(kind: .ecs, eventOriginal: true)).enumerated() {
            let event = try #require(e?.json)
            #expect(ECSTypes.problems(event) == [], "record \(i)")
        }
        // The type checker is not a rubber stamp.
        #expect(ECSTypes.problems(["source": ["ip": "cloudtrail.amazonaws.com"], "event": ["created": "yesterday"], "made": ["up": 1]]).count == 3)
    }

    /// What Elastic's AWS integration takes: the record untouched as the string `message` (its pipeline
    /// parses it), where it came from, and the record's time; no mapping of ours.
    @Test func elasticIntegrationCarriesTheRecordAsMessage() throws {
        let pretty = Records.assumedRoleEmail.replacingOccurrences(of: ",\"", with: ",\n  \"")
        let encoded = try #require(try encode([pretty], CodecOptions(kind: .elasticIntegration)).first ?? nil)
        let e = encoded.json
        let message = try #require(at(e, "message") as? String)
        let original = try #require(try JSONSerialization.jsonObject(with: Data(Records.assumedRoleEmail.utf8)) as? NSDictionary)
        #expect(try JSONSerialization.jsonObject(with: Data(message.utf8)) as? NSDictionary == original, "the whole record, value for value")
        #expect(!message.contains("\n"), "one line, as Filebeat sends it")
        #expect(at(e, "@timestamp") as? String == "2026-11-28T22:07:49.000Z")
        #expect(at(e, "aws.s3.bucket.name") as? String == "trail-bucket" && at(e, "aws.s3.bucket.arn") as? String == "arn:aws:s3:::trail-bucket")
        #expect(at(e, "aws.s3.object.key") as? String == key)
        #expect(at(e, "cloud.provider") as? String == "aws" && at(e, "cloud.region") as? String == "eu-west-1")
        #expect(at(e, "log.file.path") as? String == "s3://trail-bucket/" + key)
        #expect(Set(e.keys) == ["@timestamp", "message", "aws", "cloud", "log"], "nothing the integration's pipeline would collide with")
        #expect(encoded.info.id == (try encode([Records.assumedRoleEmail], CodecOptions(kind: .ecs)).first??.info.id), "the same id as every codec")
    }

    @Test func ocsfAPIActivityAndAuthentication() throws {
        let e = try one(Records.assumedRoleEmail, .ocsf)
        #expect(at(e, "class_uid") as? Int == 6003 && at(e, "category_uid") as? Int == 6)
        #expect(at(e, "activity_id") as? Int == 1 && at(e, "type_uid") as? Int == 600301 && at(e, "activity_name") as? String == "Create")
        #expect(at(e, "time") as? Int == 1_795_903_669_000)
        #expect(at(e, "time_dt") as? String == "2026-11-28T22:07:49.000Z")
        #expect(at(e, "status") as? String == "Success" && at(e, "status_id") as? Int == 1)
        #expect(at(e, "api.operation") as? String == "CreateUser" && at(e, "api.service.name") as? String == "iam.amazonaws.com")
        #expect(at(e, "api.request.uid") as? String == "req-1")
        #expect(at(e, "api.request.data") as? [String: String] == ["userName": "bob"])
        #expect(at(e, "actor.user.type") as? String == "AssumedRole" && at(e, "actor.user.type_id") as? Int == 1)
        #expect(at(e, "actor.user.uid") as? String == "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin/jane.doe@example.com")
        #expect(at(e, "actor.user.uid_alt") as? String == "AROAEXAMPLE:jane.doe@example.com")
        #expect(at(e, "actor.user.name") as? String == "jane.doe@example.com", "the session name")
        #expect(at(e, "actor.user.account.uid") as? String == "123456789012" && at(e, "actor.user.credential_uid") as? String == "ASIAEXAMPLE")
        #expect(at(e, "actor.session.is_mfa") as? Bool == true && at(e, "actor.session.created_time") as? Int == 1_795_899_600_000)
        #expect(at(e, "actor.session.issuer") as? String == "arn:aws:iam::123456789012:role/AWSReservedSSO_Admin")
        #expect(at(e, "src_endpoint.ip") as? String == "198.51.100.4" && at(e, "http_request.user_agent") as? String == "aws-cli/2.15")
        #expect(at(e, "cloud.provider") as? String == "AWS" && at(e, "cloud.region") as? String == "eu-west-1" && at(e, "cloud.account.uid") as? String == "123456789012")
        #expect(at(e, "metadata.uid") as? String == "11111111-2222-3333-4444-555555555555" && at(e, "metadata.version") as? String == "1.1.0")
        #expect(at(e, "metadata.product.name") as? String == "CloudTrail" && at(e, "metadata.product.vendor_name") as? String == "AWS")
        #expect(at(e, "metadata.product.version") as? String == "1.09" && at(e, "metadata.product.feature.name") as? String == "Management")
        #expect(at(e, "metadata.log_name") as? String == "s3://trail-bucket/" + key)
        let unmapped = try #require(at(e, "unmapped") as? [String: Any])
        #expect(unmapped["readOnly"] as? String == "false" && unmapped["tlsDetails.tlsVersion"] as? String == "TLSv1.3")
        #expect(at(e, "unmapped") as? [String: Any] != nil && (at(e, "unmapped") as! [String: Any])["userIdentity.sessionContext.sessionIssuer.userName"] as? String == "AWSReservedSSO_Admin")
        let resources = try #require(at(e, "resources") as? [[String: Any]])
        #expect(resources.count == 2 && resources[0]["uid"] as? String == "arn:aws:iam::123456789012:user/bob")

        let login = try one(Records.consoleLoginSuccess, .ocsf)
        #expect(at(login, "class_uid") as? Int == 3002 && at(login, "category_uid") as? Int == 3 && at(login, "type_uid") as? Int == 300201)
        #expect(at(login, "activity_name") as? String == "Logon" && at(login, "is_mfa") as? Bool == true)
        #expect(at(login, "user.name") as? String == "alice" && at(login, "dst_endpoint.svc_name") as? String == "https://console.aws.amazon.com/")
        #expect(at(login, "status") as? String == "Success")
        let failed = try one(Records.consoleLoginFailure, .ocsf)
        #expect(at(failed, "status") as? String == "Failure" && at(failed, "status_id") as? Int == 2 && at(failed, "is_mfa") as? Bool == false)
        #expect(at(failed, "status_detail") as? String == "Failed authentication" && at(failed, "src_endpoint.ip") as? String == "2001:db8::1")
        let denied = try one(Records.accessDenied, .ocsf)
        #expect(at(denied, "status_id") as? Int == 2 && at(denied, "status_code") as? String == "AccessDenied")
        #expect(at(denied, "api.response.error") as? String == "AccessDenied" && at(denied, "api.response.message") as? String == "Access Denied")
        #expect(at(denied, "activity_id") as? Int == 4 && at(denied, "src_endpoint.domain") as? String == "AWS Internal" && at(denied, "src_endpoint.uid") as? String == "vpce-1234")
        let service = try one(Records.servicePrincipal, .ocsf)
        #expect(at(service, "activity_id") as? Int == 2 && at(service, "actor.user.type_id") as? Int == 3 && at(service, "actor.invoked_by") as? String == "cloudtrail.amazonaws.com")
        let root = try one(Records.updateUser, .ocsf)
        #expect(at(root, "activity_id") as? Int == 3 && at(root, "actor.user.type_id") as? Int == 2 && at(root, "actor.user.name") as? String == "root")
        let insight = try one(Records.insight, .ocsf)
        #expect(at(insight, "activity_id") as? Int == 99 && (at(insight, "unmapped") as? [String: Any])?["insightDetails.insightType"] as? String == "ApiCallRateInsight")
        let minimal = try one(Records.minimal, .ocsf)
        #expect(at(minimal, "metadata.labels") as? [String] == [EventBuilder.fallbackTag] && at(minimal, "time") as? Int == 1_795_903_500_000)
    }

    @Test func ocsfEventsHaveTheirRequiredAttributesAndTypes() throws {
        let records = Records.all + (try Records.samples())
        for (i, e) in try encode(records, CodecOptions(kind: .ocsf)).enumerated() {
            let event = try #require(e?.json)
            let info = try #require(e?.info)
            for attribute in ["class_uid", "category_uid", "activity_id", "type_uid", "severity_id", "status_id", "time"] {
                #expect(at(event, attribute) is Int && !ECSTypes.isBool(at(event, attribute)!), "record \(i): \(attribute) is an integer")
            }
            #expect(at(event, "metadata.version") as? String == "1.1.0" && at(event, "metadata.product.name") as? String == "CloudTrail")
            #expect((at(event, "type_uid") as! Int) == (at(event, "class_uid") as! Int) * 100 + (at(event, "activity_id") as! Int))
            #expect(info.timestamp.map { String(decoding: $0, as: UTF8.self) } == at(event, "time_dt") as? String, "outputs name indices by this time")
            for (k, v) in (at(event, "unmapped") as? [String: Any]) ?? [:] { #expect(v is String, "record \(i): unmapped.\(k) is a string") }
        }
    }

    @Test(arguments: [("CreateUser", Verb.create), ("GetObject", .read), ("DescribeTags", .read), ("DeleteTags", .delete), ("PutBucketPolicy", .update),
                      ("RunInstances", .create), ("TerminateInstances", .delete), ("Getaway", .other), ("ConsoleLogin", .other), ("Decrypt", .read)])
    func verbsFromEventNames(name: String, verb: Verb) {
        #expect(Verb.of(name, readOnly: nil) == verb)
    }
}

@Suite("Filters")
struct FilterTests {
    func kept(_ filter: RecordFilter) throws -> [Bool] {
        try encode(Records.all, CodecOptions(), filter: filter).map { $0 != nil }
    }

    @Test func includeExcludeGlobsBooleansAndNestedFields() throws {
        // all: login ok, login failed, assumed role (iam), kms decrypt by a service, s3 denied, iam root, insight, minimal
        #expect(try kept(RecordFilter(exclude: [["readOnly": ["true"]]])) == [true, true, true, false, true, true, true, true])
        #expect(try kept(RecordFilter(include: [["eventSource": ["iam.*", "signin.amazonaws.com"]]])) == [true, true, true, false, false, true, false, false])
        #expect(try kept(RecordFilter(exclude: [["eventSource": ["kms.amazonaws.com"], "eventName": ["Decrypt"], "userIdentity.type": ["AWSService"]]]))
                == [true, true, true, false, true, true, true, true])
        #expect(try kept(RecordFilter(include: [["errorCode": ["*"]]])) == [false, false, false, false, true, false, false, false])
        #expect(try kept(RecordFilter(exclude: [["userIdentity.sessionContext.attributes.mfaAuthenticated": ["true"]]])) == [true, true, false, true, true, true, true, true])
        #expect(try kept(RecordFilter(include: [["eventName": ["???????Login"]], ["managementEvent": ["false"]]])) == [true, true, false, false, false, false, false, false])
        // A watch-list: drop read-only events except the sensitive ones, with a negation.
        let watch = RecordFilter(exclude: [["readOnly": ["true"], "eventName": ["!Decrypt", "!GetSecretValue"]]])
        #expect(try kept(watch) == [true, true, true, true, true, true, true, true])
        let noWatch = RecordFilter(exclude: [["readOnly": ["true"], "eventName": ["!GetSecretValue"]]])
        #expect(try kept(noWatch) == [true, true, true, false, true, true, true, true])
        // Negations only: holds for a missing field too (the minimal record has no eventName).
        #expect(try kept(RecordFilter(exclude: [["eventName": ["!ConsoleLogin"]]])) == [true, true, false, false, false, false, false, false])
        #expect(RecordFilter().isEmpty && !RecordFilter(dropFields: ["x"]).isEmpty)
        // A path through an array: any element.
        #expect(try kept(RecordFilter(exclude: [["resources.type": ["AWS::KMS::*"]]])) == [true, true, true, false, true, true, true, true])
        #expect(try kept(RecordFilter(include: [["resources.ARN": ["*:user/bob"]]])) == [false, false, true, false, false, false, false, false])
    }

    @Test func dropFieldsRemovesMembersAtAnyDepthAndInArrays() throws {
        let filter = RecordFilter(dropFields: ["responseElements", "userIdentity.sessionContext.attributes", "resources.accountId", "nothing.here"])
        let e = try #require(try encode([Records.assumedRoleEmail], CodecOptions(), filter: filter).first??.json)
        let record = try #require(e["cloudtrail"] as? [String: Any])
        #expect(record["responseElements"] == nil && record["requestParameters"] != nil)
        #expect(at(record, "userIdentity.sessionContext.attributes") == nil && at(record, "userIdentity.sessionContext.sessionIssuer.type") as? String == "Role")
        let resources = try #require(record["resources"] as? [[String: String]])
        #expect(resources.allSatisfy { $0["accountId"] == nil && $0["ARN"] != nil })
        #expect(e["@timestamp"] as? String == "2026-11-28T22:07:49.000Z", "the time still comes from the record")
        // The same through a mapping codec.
        let ecs = try #require(try encode([Records.assumedRoleEmail], CodecOptions(kind: .ecs), filter: filter).first??.json)
        #expect(at(ecs, "aws.cloudtrail.response_elements") == nil && at(ecs, "user.target.id") == nil && at(ecs, "aws.cloudtrail.request_parameters") != nil)
    }

    @Test func globs() {
        #expect(Glob("Describe*").matches("DescribeInstances") && !Glob("Describe*").matches("ListInstances"))
        #expect(Glob("*Object*").matches("GetObjectAcl") && Glob("*").matches("") && !Glob("?").matches(""))
        #expect(Glob("a*b*c").matches("aXXbYYc") && !Glob("a*b*c").matches("aXXbYY") && Glob("a**").matches("a"))
        #expect(Glob("exact").matches("exact") && !Glob("exact").matches("exactly"))
    }
}

@Suite("Record trees")
struct RecordTreeTests {
    @Test func parsesAndRefusesWithoutTrapping() {
        var tree = RecordTree()
        let good = #"{"a": [1, {"b": "x\"y"}, true, null], "c": {}, "d": -1.5e3, "\u0065": "é"}"#
        Array(good.utf8).withUnsafeBytes { b in
            let parsed = tree.parse(b)
            #expect(parsed)
            #expect(tree.elements(tree.member(0, "a")!).count == 4)
            #expect(tree.string(tree.member(tree.elements(tree.member(0, "a")!)[1], "b")!) == "x\"y")
            #expect(tree.member(0, named: "e").map { tree.string($0) } == "é", "an escaped key")
            #expect(tree.scalarText(tree.member(0, "d")!) == "-1.5e3" && tree.members(0).count == 4)
        }
        for bad in ["", "{", "{\"a\"}", "{\"a\":1,}", "[1 2]", "{\"a\":1}x", "\"open", "{\"a\":tru}", String(repeating: "[", count: 600) + String(repeating: "]", count: 600)] {
            let parsed = Array(bad.utf8).withUnsafeBytes { b in tree.parse(b) }
            #expect(!parsed, "\(bad.prefix(20))")
            #expect(tree.nodes.isEmpty)
        }
    }

    @Test func unescapes() {
        let cases = [#"plain"#: "plain", #"a\nb\t\"q\"\\"#: "a\nb\t\"q\"\\", #"\u00e9\ud83d\ude00"#: "é😀", #"\ud800x"#: "\u{FFFD}x"]
        for (raw, want) in cases { Array(raw.utf8).withUnsafeBytes { #expect(JSONText.unescape($0) == want) } }
    }
}
