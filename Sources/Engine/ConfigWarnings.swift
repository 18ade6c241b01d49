import AWS
import Foundation
import Outputs

/// Settings that are valid but weaken what the shipper guarantees: said as warnings by `test config`
/// and in the log at start, so that a weakened setup is never silent.
extension Config {
    /// Whether SNS envelopes' signatures are checked: `input.sns_signature` when set; `auto` checks them
    /// unless the queue's endpoint is a loopback address (a local stand-in, whose signatures are fake).
    /// A custom endpoint elsewhere (a VPC endpoint, a proxy) is still AWS's queue: signatures are checked.
    public func verifiesSNSSignatures(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        if let configured = input.verifySNSSignatures { return configured }
        guard let endpoint = AWSSettings.endpoint(service: "sqs", configured: input.endpoint, environment: environment) else { return true }
        return !PeerName(url: endpoint).isLoopback
    }

    /// One sentence per weakened guarantee, naming the setting: SNS envelopes taken unverified, TLS
    /// that checks nothing, secrets sent in plain text to a host off this machine.
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
        return warnings + outputWarnings()
    }

    /// Outputs' settings that work, but let anyone on the path read (or change) what is sent.
    private func outputWarnings() -> [String] {
        let c = self
        var w: [String] = []
        for name in c.outputNames {
            if let tls = c.tls(forOutput: name), !tls.verify {
                w.append("output.\(name): ssl.verification_mode is none: the server's certificate and name are not checked, so anyone on the path can read and change what is sent")
            }
        }
        func exposed(_ url: String) -> Bool { !PeerName(url: url).isLoopback }
        if let e = c.elasticsearch {
            let secret = e.apiKey != nil ? "the API key goes" : e.username != nil ? "the username and password go" : e.awsAuth != nil ? "the SigV4 session token (when there is one) goes" : nil
            for host in e.hosts where TLSSettings.isPlainHTTP(host) && exposed(host) {
                if let secret { w.append("output.elasticsearch: \(secret) to \(host) in plain HTTP: use https:// (or ssl, which makes a host without a scheme https)") }
            }
        }
        if let s = c.splunk, TLSSettings.isPlainHTTP(s.url), exposed(s.url) {
            w.append("output.splunk: the HEC token goes to \(s.url) in plain HTTP: use https://")
        }
        if let r = c.redis, r.password != nil, r.tls == nil {
            for host in r.hosts where exposed(host) { w.append("output.redis: the password goes to \(host) in plain text: configure ssl") }
        }
        return w
    }
}
