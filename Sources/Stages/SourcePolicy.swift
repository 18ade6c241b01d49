import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What this instance accepts to read (`input.buckets`, `input.accounts`, `input.topics`): anyone who
/// can publish to the topic or send to the queue could otherwise make it fetch a bucket they name, or
/// ship forged audit events. Each check answers nil (accepted) or the refusal, naming the setting.
/// An empty list accepts everything, as before these settings existed.
public struct SourcePolicy: Sendable, Equatable {
    /// Bucket names or glob patterns (`*`, `?`, `[…]`, as fnmatch).
    public var buckets: [String]
    /// 12-digit account IDs whose logs are accepted.
    public var accounts: Set<String>
    /// SNS TopicArns messages must come from (a message not in an SNS envelope is then refused).
    public var topics: Set<String>

    public init(buckets: [String] = [], accounts: Set<String> = [], topics: Set<String> = []) {
        self.buckets = buckets
        self.accounts = accounts
        self.topics = topics
    }

    public var acceptsEverything: Bool { buckets.isEmpty && accounts.isEmpty && topics.isEmpty }

    /// The refusal for a message from `topic` (nil: not in an SNS envelope).
    public func refusal(topic: String?) -> String? {
        guard !topics.isEmpty else { return nil }
        guard let topic else { return "the message did not come through SNS, and input.topics lists the topics accepted" }
        return topics.contains(topic) ? nil : "topic '\(topic)' is not in input.topics"
    }

    /// The refusal for the bucket alone (a backfill's `-b`). A name that is not an S3 bucket name is
    /// refused whatever the settings (``S3Name``): a glob's `*` then never spans a character that could
    /// change where a request goes.
    public func refusal(bucket: String) -> String? {
        if let problem = S3Name.bucketProblem(bucket) {
            return "bucket '\(UntrustedText.escaped(bucket))' is not an S3 bucket name: \(problem)"
        }
        guard !buckets.isEmpty else { return nil }
        return buckets.contains(where: { fnmatch($0, bucket, 0) == 0 }) ? nil : "bucket '\(bucket)' is not in input.buckets"
    }

    /// The refusal for an object, by its bucket and the account its key names.
    public func refusal(bucket: String, key: String) -> String? {
        refusal(bucket: bucket) ?? refusal(accountOf: key)
    }

    /// The refusal for the account a key names (a local copy, or a bucket already accepted).
    public func refusal(accountOf key: String) -> String? {
        guard !accounts.isEmpty else { return nil }
        guard let account = SourcePolicy.account(inKey: key) else {
            return "the key names no account (…AWSLogs/<account>/… or …AWSLogs/<org-id>/<account>/…), and input.accounts lists the accounts accepted"
        }
        return accounts.contains(account) ? nil : "account '\(account)' is not in input.accounts"
    }

    /// The refusal for a record of the object whose key names `keyAccount`: its `recipientAccountId`
    /// must be that account (a forged file under a watched account's prefix says otherwise).
    public func refusal(recipientAccount: String?, keyAccount: String?, record: UInt64) -> String? {
        guard !accounts.isEmpty, let keyAccount, let recipientAccount, recipientAccount != keyAccount else { return nil }
        return "record \(record) has recipientAccountId '\(recipientAccount)', not the key's account '\(keyAccount)' (input.accounts)"
    }

    /// The account a CloudTrail key names: `[prefix/]AWSLogs/<account>/…` or
    /// `[prefix/]AWSLogs/<o-org>/<account>/…`.
    public static func account(inKey key: String) -> String? {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard let i = parts.firstIndex(of: "AWSLogs"), i + 1 < parts.count else { return nil }
        var candidate = parts[i + 1]
        if candidate.hasPrefix("o-"), i + 2 < parts.count { candidate = parts[i + 2] }
        guard candidate.count == 12, candidate.allSatisfy(\.isASCII), candidate.allSatisfy(\.isNumber) else { return nil }
        return String(candidate)
    }
}

extension NotificationDecoder {
    /// The `TopicArn` of an SNS envelope, or nil when the body is not one.
    public static func topicArn(_ body: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              object["Type"] is String else { return nil }
        return object["TopicArn"] as? String
    }
}
