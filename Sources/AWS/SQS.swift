import Foundation
import HTTP

/// An SQS message as received.
public struct SQSMessage: Sendable, Equatable {
    public var id: String
    public var receiptHandle: String
    public var body: String
    /// `ApproximateReceiveCount` (1 on the first delivery).
    public var receiveCount: UInt32
    public var attributes: [String: String]
}

/// One entry's outcome in a batch call.
public struct SQSBatchFailure: Sendable, Equatable {
    public var id: String
    public var code: String
    public var message: String
    public var senderFault: Bool
    public var isInvalidReceipt: Bool { code.contains("ReceiptHandleIsInvalid") || code == "InvalidParameterValue" && message.contains("eceipt") }
}

/// SQS over its JSON 1.0 protocol.
public struct SQSClient: Sendable {
    public let service: AWSService
    public let queueURL: String

    /// SQS's limits on a batch.
    public static let maxBatchEntries = 10
    public static let maxBatchBytes = 256 * 1024

    public init(service: AWSService, queueURL: String) {
        self.service = service
        self.queueURL = queueURL
    }

    func call(_ op: String, _ body: [String: Any], timeout: Double? = nil) async throws -> [String: Any] {
        var payload = body
        if payload["QueueUrl"] == nil { payload["QueueUrl"] = queueURL }
        let data = try JSONSerialization.data(withJSONObject: payload)
        var call = AWSService.Call(
            operation: op, method: "POST",
            headers: [("Content-Type", "application/x-amz-json-1.0"), ("X-Amz-Target", "AmazonSQS.\(op)")], body: Array(data))
        call.timeout = timeout ?? 30
        let r = try await service.send(call)
        if r.body.isEmpty { return [:] }
        // A 2xx answer that is not a JSON object says nothing reliable (a proxy's page, a cut-off body):
        // an error to retry, never an empty success (which would read as "nothing failed").
        guard let answer = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
            throw AWSError(
                kind: .server, code: "MalformedResponse",
                message: "the answer is not a JSON object: \(String(decoding: r.body.prefix(120), as: UTF8.self).debugDescription)",
                requestID: r.head.header("x-amzn-requestid"), status: r.status, service: "sqs", operation: op)
        }
        return answer
    }

    /// Long-polls for up to `max` (1–10) messages, waiting up to `waitSeconds` (≤ 20).
    public func receive(max: Int = 10, waitSeconds: Int = 20, visibilityTimeout: Int? = nil) async throws -> [SQSMessage] {
        var body: [String: Any] = [
            "MaxNumberOfMessages": Swift.max(1, Swift.min(10, max)), "WaitTimeSeconds": Swift.max(0, Swift.min(20, waitSeconds)),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"],
            "AttributeNames": ["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"],
        ]
        if let visibilityTimeout { body["VisibilityTimeout"] = visibilityTimeout }
        let answer = try await call("ReceiveMessage", body, timeout: Double(waitSeconds) + 15)
        return SQSClient.messages(inReceiveAnswer: answer)
    }

    /// The messages of a ReceiveMessage answer (JSON protocol); entries without an id or a receipt
    /// handle are left out.
    public static func messages(inReceiveAnswer answer: [String: Any]) -> [SQSMessage] {
        (answer["Messages"] as? [[String: Any]] ?? []).compactMap { m in
            guard let id = m["MessageId"] as? String, let handle = m["ReceiptHandle"] as? String else { return nil }
            let attributes = (m["Attributes"] as? [String: Any] ?? [:]).compactMapValues { $0 as? String ?? ($0 as? NSNumber)?.stringValue }
            return SQSMessage(
                id: id, receiptHandle: handle, body: m["Body"] as? String ?? "",
                receiveCount: UInt32(attributes["ApproximateReceiveCount"] ?? "1") ?? 1, attributes: attributes)
        }
    }

    /// Deletes up to 10 messages; returns the entries that failed (e.g. `ReceiptHandleIsInvalid`).
    /// Entry ids are the indices of `receiptHandles`.
    public func deleteBatch(_ receiptHandles: [String]) async throws -> [SQSBatchFailure] {
        precondition(receiptHandles.count <= SQSClient.maxBatchEntries)
        guard !receiptHandles.isEmpty else { return [] }
        let entries = receiptHandles.enumerated().map { ["Id": "\($0.offset)", "ReceiptHandle": $0.element] }
        return SQSClient.failures(try await call("DeleteMessageBatch", ["Entries": entries]), entries: receiptHandles.count)
    }

    public func changeVisibility(_ receiptHandle: String, timeout: Int) async throws {
        _ = try await call("ChangeMessageVisibility", ["ReceiptHandle": receiptHandle, "VisibilityTimeout": timeout])
    }

    /// Changes the visibility of up to 10 messages; returns the entries that failed.
    public func changeVisibilityBatch(_ entries: [(receiptHandle: String, timeout: Int)]) async throws -> [SQSBatchFailure] {
        precondition(entries.count <= SQSClient.maxBatchEntries)
        guard !entries.isEmpty else { return [] }
        let list = entries.enumerated().map { ["Id": "\($0.offset)", "ReceiptHandle": $0.element.receiptHandle, "VisibilityTimeout": $0.element.timeout] as [String: Any] }
        return SQSClient.failures(try await call("ChangeMessageVisibilityBatch", ["Entries": list]), entries: entries.count)
    }

    /// Sends bodies in as many batches as SQS's limits (10 entries, 256 KiB) require; returns the
    /// indices (into `bodies`) that failed with their reasons.
    public func sendBatch(_ bodies: [String]) async throws -> [(index: Int, failure: SQSBatchFailure)] {
        var failed: [(Int, SQSBatchFailure)] = []
        for batch in SQSClient.batches(bodies) {
            let entries = batch.map { ["Id": "\($0)", "MessageBody": bodies[$0]] }
            for f in SQSClient.failures(try await call("SendMessageBatch", ["Entries": entries]), ids: batch.map { "\($0)" }) {
                failed.append((Int(f.id) ?? -1, f))
            }
        }
        return failed
    }

    /// Groups indices of `bodies` into batches within SQS's entry and size limits.
    public static func batches(_ bodies: [String]) -> [[Int]] {
        var out: [[Int]] = []
        var current: [Int] = []
        var bytes = 0
        for (i, b) in bodies.enumerated() {
            let size = b.utf8.count
            if !current.isEmpty && (current.count == maxBatchEntries || bytes + size > maxBatchBytes) {
                out.append(current)
                current = []
                bytes = 0
            }
            current.append(i)
            bytes += size
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Creates a queue (set-up and the demo); returns its URL.
    public static func createQueue(service: AWSService, name: String, attributes: [String: String] = [:]) async throws -> String {
        let client = SQSClient(service: service, queueURL: "")
        var body: [String: Any] = ["QueueName": name]
        if !attributes.isEmpty { body["Attributes"] = attributes }
        body["QueueUrl"] = NSNull()
        body.removeValue(forKey: "QueueUrl")
        let data = try JSONSerialization.data(withJSONObject: body)
        let r = try await service.send(AWSService.Call(
            operation: "CreateQueue", method: "POST",
            headers: [("Content-Type", "application/x-amz-json-1.0"), ("X-Amz-Target", "AmazonSQS.CreateQueue")], body: Array(data)))
        _ = client
        guard let json = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any], let url = json["QueueUrl"] as? String else {
            throw AWSError(kind: .server, code: "MalformedResponse", message: "CreateQueue returned no QueueUrl", requestID: nil, status: r.status, service: "sqs", operation: "CreateQueue")
        }
        return url
    }

    public func attributes(_ names: [String] = ["All"]) async throws -> [String: String] {
        let answer = try await call("GetQueueAttributes", ["AttributeNames": names])
        return (answer["Attributes"] as? [String: Any] ?? [:]).compactMapValues { $0 as? String ?? ($0 as? NSNumber)?.stringValue }
    }

    /// The failed entries of a batch answer whose entry ids are `0..<entries`.
    static func failures(_ answer: [String: Any], entries: Int) -> [SQSBatchFailure] {
        failures(answer, ids: (0..<entries).map { "\($0)" })
    }

    /// The failed entries of a batch answer, by `Id`: those it lists under `Failed`, and any of `ids` it
    /// lists under neither `Failed` nor `Successful` (counted as failed, so the caller tries again).
    static func failures(_ answer: [String: Any], ids: [String]) -> [SQSBatchFailure] {
        var failed = (answer["Failed"] as? [[String: Any]] ?? []).map {
            SQSBatchFailure(
                id: $0["Id"] as? String ?? "", code: $0["Code"] as? String ?? "", message: $0["Message"] as? String ?? "",
                senderFault: $0["SenderFault"] as? Bool ?? false)
        }
        var answered = Set(failed.map(\.id))
        for entry in answer["Successful"] as? [[String: Any]] ?? [] { if let id = entry["Id"] as? String { answered.insert(id) } }
        for id in ids where !answered.contains(id) {
            failed.append(SQSBatchFailure(id: id, code: "NotAnswered", message: "the batch answer lists this entry as neither successful nor failed", senderFault: false))
        }
        return failed
    }
}
