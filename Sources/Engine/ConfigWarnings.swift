import AWS
import Foundation

/// Settings that are valid but weaken what the shipper guarantees: said as warnings by `test config`
/// and in the log at start, so that a weakened setup is never silent.
extension Config {
    /// Whether SNS envelopes' signatures are checked: `input.sns_signature` when set; `auto` checks them
    /// unless the queue's endpoint is a loopback address (a local stand-in, whose signatures are fake).
    /// A custom endpoint elsewhere (a VPC endpoint, a proxy) is still AWS's queue: signatures are checked.
    public func verifiesSNSSignatures(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        if let configured = input.verifySNSSignatures { return configured }
        guard let endpoint = AWSSettings.endpoint(service: "sqs", configured: input.endpoint, environment: environment) else { return true }
        return !Config.isLoopback(url: endpoint)
    }

    /// One sentence per weakened guarantee, naming the setting.
    public func warnings(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var warnings: [String] = []
        if input.sqsURL != nil && !verifiesSNSSignatures(environment: environment) {
            let why = input.verifySNSSignatures == false ? "input.sns_signature is false" : "input.sns_signature is auto and the queue's endpoint is a loopback stand-in"
            if !input.policy.topics.isEmpty {
                warnings.append("input.topics is set but SNS signatures are not verified (\(why)): anyone who can send to the queue can write any TopicArn")
            } else if input.verifySNSSignatures == false {
                warnings.append("SNS signatures are not verified (\(why)): anyone who can send to the queue can forge an SNS envelope")
            }
        }
        return warnings
    }

    /// Whether `url`'s host is a loopback address or name (127.0.0.0/8, ::1, localhost).
    static func isLoopback(url: String) -> Bool {
        guard let host = URLComponents(string: url)?.host?.lowercased() else { return false }
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        if bare == "localhost" || bare.hasSuffix(".localhost") || bare == "::1" { return true }
        var address = in_addr()
        return inet_pton(AF_INET, bare, &address) == 1 && UInt32(bigEndian: address.s_addr) >> 24 == 127
    }
}
