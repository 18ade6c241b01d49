import Foundation
import HTTP

/// CloudTrail over its JSON 1.1 protocol: the one call integrity validation needs.
public struct CloudTrailClient: Sendable {
    public let service: AWSService

    public init(service: AWSService) { self.service = service }

    /// `ListPublicKeys` for a time range, every page: the raw JSON of each page (`{"PublicKeyList": […]}`),
    /// for the caller to parse (the Integrity module reads that shape).
    public func listPublicKeys(from start: Date, to end: Date) async throws -> [[UInt8]] {
        var pages: [[UInt8]] = []
        var token: String?
        repeat {
            var payload: [String: Any] = ["StartTime": Int(start.timeIntervalSince1970), "EndTime": Int(end.timeIntervalSince1970)]
            if let token { payload["NextToken"] = token }
            var call = AWSService.Call(
                operation: "ListPublicKeys", method: "POST",
                headers: [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "CloudTrail_20131101.ListPublicKeys")],
                body: Array(try JSONSerialization.data(withJSONObject: payload)))
            call.timeout = 30
            let r = try await service.send(call)
            guard let answer = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
                throw AWSError(kind: .server, code: "MalformedResponse", message: "the ListPublicKeys answer is not a JSON object", requestID: r.head.header("x-amzn-requestid"), status: r.status, service: "cloudtrail", operation: "ListPublicKeys")
            }
            pages.append(r.body)
            token = answer["NextToken"] as? String
        } while token != nil && pages.count < 100
        return pages
    }
}
