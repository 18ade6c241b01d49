import Foundation

/// An S3 object a notification names.
public struct ObjectReference: Sendable, Hashable {
    public var bucket: String
    public var key: String
    /// The object's ETag without quotes, when the notification gives it.
    public var etag: String?
    public var versionID: String?
    public var size: UInt64?
    public var sequencer: String?

    public init(bucket: String, key: String, etag: String? = nil, versionID: String? = nil, size: UInt64? = nil, sequencer: String? = nil) {
        self.bucket = bucket
        self.key = key
        self.etag = etag
        self.versionID = versionID
        self.size = size
        self.sequencer = sequencer
    }
}

/// What an SQS message body means.
public enum DecodedNotification: Sendable, Equatable {
    /// Objects to fetch, and the notification's shape (for logs and metrics).
    case objects([ObjectReference], shape: String)
    /// A message to delete without doing anything (a validation message, a test event), and why.
    case nothingToDo(String)
    /// Not a notification we know; never guessed at. The reason says what was found.
    case unrecognised(String)
}

/// Decodes every notification shape CloudTrail and S3 send to SQS (see docs and formats): SNS
/// envelopes, raw CloudTrail notifications, S3 event notifications (also inside SNS), S3 test events,
/// and EventBridge "Object Created" events. Never throws, never crashes on bad input.
///
/// It is also the gate for what anyone who can send to the queue may name: a message whose objects
/// are more than `maxKeys`, or any of whose bucket or key is not a valid S3 name (``S3Name``), is
/// unrecognised as a whole, before any policy or request sees one of its names.
public enum NotificationDecoder {
    /// SQS's own limit on a message body.
    public static let maxBodySize = 256 * 1024
    /// The default of `input.max_keys_per_message`: CloudTrail, S3 and EventBridge notifications name
    /// one object each (CloudTrail's own list holds one key in practice), so a hundred is far above any.
    public static let defaultMaxKeys = 100

    public static func decode(_ body: String, maxKeys: Int = defaultMaxKeys) -> DecodedNotification {
        decode(Array(body.utf8), maxKeys: maxKeys)
    }

    public static func decode(_ body: [UInt8], maxKeys: Int = defaultMaxKeys) -> DecodedNotification {
        guard body.count <= maxBodySize else {
            return .unrecognised("the message body is \(body.count) bytes, more than SQS's \(maxBodySize)")
        }
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
        } catch {
            return .unrecognised("the message body is not JSON (\(excerpt(body)))")
        }
        let decoded = decode(value, wrapped: false)
        guard case .objects(let refs, _) = decoded else { return decoded }
        return gate(refs, maxKeys: maxKeys) ?? decoded
    }

    /// Why a message naming `refs` is refused whole (too many objects, or a name S3 would not accept),
    /// or nil. The names quoted in the reason are escaped (they are the sender's text).
    static func gate(_ refs: [ObjectReference], maxKeys: Int) -> DecodedNotification? {
        guard refs.count <= maxKeys else {
            return .unrecognised("the message names \(refs.count) objects, more than input.max_keys_per_message (\(maxKeys))")
        }
        for ref in refs {
            if let problem = S3Name.bucketProblem(ref.bucket) {
                return .unrecognised("bucket '\(quoted(ref.bucket))' is not an S3 bucket name: \(problem)")
            }
            if let problem = S3Name.keyProblem(ref.key) {
                return .unrecognised("the key '\(quoted(ref.key))' in bucket '\(ref.bucket)' \(problem)")
            }
        }
        return nil
    }

    /// A name from the message as it may be quoted: control characters escaped, at most 200 characters.
    private static func quoted(_ name: String) -> String {
        let escaped = UntrustedText.escaped(name)
        return escaped.count > 200 ? String(escaped.prefix(200)) + "…" : escaped
    }

    private static func decode(_ value: Any, wrapped: Bool) -> DecodedNotification {
        guard let object = value as? [String: Any] else {
            return .unrecognised("the message body is JSON \(kind(value)), not an object")
        }
        // 1, 2. An SNS envelope: decode the inner message (once).
        if let type = object["Type"] as? String, object["TopicArn"] != nil || object["Message"] != nil {
            guard !wrapped else { return .unrecognised("an SNS envelope inside an SNS envelope") }
            switch type {
            case "Notification":
                guard let message = object["Message"] as? String else {
                    return .unrecognised("an SNS notification without a Message string")
                }
                if message.trimmingCharacters(in: .whitespacesAndNewlines) == "CloudTrail validation message." {
                    return .nothingToDo("CloudTrail validation message")
                }
                guard let inner = try? JSONSerialization.jsonObject(with: Data(message.utf8), options: [.fragmentsAllowed]) else {
                    return .unrecognised("the SNS Message is not JSON (\(excerpt(Array(message.utf8))))")
                }
                switch decode(inner, wrapped: true) {
                case .objects(let refs, let shape): return .objects(refs, shape: "sns/" + shape)
                case let other: return other
                }
            case "SubscriptionConfirmation", "UnsubscribeConfirmation":
                return .nothingToDo("SNS \(type)")
            default:
                return .unrecognised("an SNS message of type '\(quoted(type))'")
            }
        }
        // 3. A CloudTrail notification (raw delivery, or inside SNS).
        if let bucket = object["s3Bucket"] as? String {
            let keys: [String]
            if let list = object["s3ObjectKey"] as? [Any] {
                let strings = list.compactMap { $0 as? String }
                guard strings.count == list.count else { return .unrecognised("s3ObjectKey holds something other than strings") }
                keys = strings
            } else if let one = object["s3ObjectKey"] as? String {
                keys = [one]
            } else {
                return .unrecognised("a CloudTrail notification without s3ObjectKey")
            }
            guard !bucket.isEmpty, keys.allSatisfy({ !$0.isEmpty }) else {
                return .unrecognised("a CloudTrail notification with an empty bucket or key")
            }
            if keys.isEmpty { return .nothingToDo("a CloudTrail notification naming no object") }
            return .objects(keys.map { ObjectReference(bucket: bucket, key: $0) }, shape: "cloudtrail")
        }
        // 5. The S3 test event.
        if let event = object["Event"] as? String, event == "s3:TestEvent" {
            return .nothingToDo("S3 test event")
        }
        // 4. An S3 event notification.
        if let records = object["Records"] as? [Any] {
            var refs: [ObjectReference] = []
            var skipped: [String] = []
            for (i, item) in records.enumerated() {
                guard let record = item as? [String: Any], let name = record["eventName"] as? String else {
                    return .unrecognised("Records[\(i)] is not an S3 event record")
                }
                guard (record["eventSource"] as? String) == "aws:s3" else {
                    return .unrecognised("Records[\(i)] has eventSource '\(quoted("\(record["eventSource"] ?? "none")"))', not aws:s3")
                }
                guard name.hasPrefix("ObjectCreated:") else {
                    skipped.append(quoted(name))
                    continue
                }
                guard let s3 = record["s3"] as? [String: Any], let bucket = (s3["bucket"] as? [String: Any])?["name"] as? String,
                    let object = s3["object"] as? [String: Any], let rawKey = object["key"] as? String
                else {
                    return .unrecognised("Records[\(i)] (\(quoted(name))) lacks s3.bucket.name or s3.object.key")
                }
                guard let key = formURLDecode(rawKey) else {
                    return .unrecognised("Records[\(i)] has a key that is not valid URL encoding: \(quoted(rawKey))")
                }
                guard !bucket.isEmpty, !key.isEmpty else {
                    return .unrecognised("Records[\(i)] (\(quoted(name))) names an empty bucket or key")
                }
                refs.append(
                    ObjectReference(
                        bucket: bucket, key: key, etag: etag(object["eTag"] ?? object["etag"]),
                        versionID: version(object["versionId"]), size: size(object["size"]),
                        sequencer: object["sequencer"] as? String))
            }
            if refs.isEmpty {
                return .nothingToDo(skipped.isEmpty ? "an S3 event with no records" : "S3 event \(Set(skipped).sorted().joined(separator: ", ")), not ObjectCreated")
            }
            return .objects(refs, shape: "s3-event")
        }
        // 6. EventBridge.
        if let source = object["source"] as? String, source == "aws.s3", let detailType = object["detail-type"] as? String {
            guard detailType == "Object Created" else { return .nothingToDo("EventBridge '\(quoted(detailType))' event") }
            guard let detail = object["detail"] as? [String: Any], let bucket = (detail["bucket"] as? [String: Any])?["name"] as? String,
                let obj = detail["object"] as? [String: Any], let key = obj["key"] as? String
            else {
                return .unrecognised("an EventBridge Object Created event without detail.bucket.name or detail.object.key")
            }
            guard !bucket.isEmpty, !key.isEmpty else {
                return .unrecognised("an EventBridge Object Created event naming an empty bucket or key")
            }
            return .objects(
                [
                    ObjectReference(
                        bucket: bucket, key: key, etag: etag(obj["etag"] ?? obj["eTag"]), versionID: version(obj["version-id"]),
                        size: size(obj["size"]), sequencer: obj["sequencer"] as? String)
                ], shape: "eventbridge")
        }
        let keys = object.keys.sorted().prefix(8).map(quoted).joined(separator: ", ")
        return .unrecognised("a JSON object with keys [\(keys)] is no known notification")
    }

    /// Decodes S3's form-URL encoding (`+` is a space, `%XX` a byte); nil when malformed.
    public static func formURLDecode(_ s: String) -> String? {
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
                i += 1
            } else if b == UInt8(ascii: "%") {
                guard i + 2 < bytes.count, let h = hex(bytes[i + 1]), let l = hex(bytes[i + 2]) else { return nil }
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(b)
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x37
        case 0x61...0x66: b - 0x57
        default: nil
        }
    }

    private static func etag(_ v: Any?) -> String? {
        guard let s = v as? String, !s.isEmpty else { return nil }
        return s.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    private static func version(_ v: Any?) -> String? {
        guard let s = v as? String, !s.isEmpty, s != "null" else { return nil }
        return s
    }

    private static func size(_ v: Any?) -> UInt64? {
        if let n = v as? NSNumber { return n.int64Value >= 0 ? UInt64(n.int64Value) : nil }
        return nil
    }

    private static func kind(_ v: Any) -> String {
        switch v {
        case is [Any]: "array"
        case is String: "string"
        case is NSNumber: "number/boolean"
        case is NSNull: "null"
        default: "value"
        }
    }

    private static func excerpt(_ bytes: [UInt8]) -> String {
        let head = UntrustedText.escaped(String(decoding: bytes.prefix(64), as: UTF8.self))
        return bytes.count > 64 ? "starts with \"\(head)…\"" : "\"\(head)\""
    }
}
