import AWS
import Foundation
import HTTP
import Integrity
import Journal
import Logging
import Outputs
import ServiceLifecycle
import SNSSignature
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// Builds the engine from a configuration and runs it: AWS clients, journal, outputs, signals.
public enum Bootstrap {
    /// The outputs a configuration names: each section holds its output's configuration as it is.
    public static func outputs(_ c: Config) throws -> [any Output] {
        var out: [any Output] = []
        if let f = c.fileOutput { out.append(try FileOutput(f.output)) }
        if let s = c.console { out.append(ConsoleOutput(pretty: s.pretty)) }
        if let e = c.elasticsearch {
            var o = e.output
            if let auth = e.awsAuth { o.signer = try openSearchSigner(c, auth, hosts: e.hosts) }
            out.append(try ElasticsearchOutput(o))
        }
        if let l = c.logstash { out.append(try LogstashOutput(l.output)) }
        if let r = c.redis { out.append(try RedisOutput(r.output)) }
        if let s = c.splunk { out.append(try SplunkHECOutput(s.output)) }
        return out
    }

    /// SigV4 for `output.elasticsearch.aws_auth`: the input's credential chain (environment, profile,
    /// web identity, container, instance), with `aws_auth.role_arn` (not `input.role_arn`, which is for
    /// reading the bucket) assumed on top. The region and service come from the settings, else from the
    /// first host's name (`search-….eu-west-1.es.amazonaws.com`, `….us-east-1.aoss.amazonaws.com`), else
    /// the region as `input.aws_region` resolves it without instance metadata.
    static func openSearchSigner(
        _ c: Config, _ auth: Config.AWSAuthSection, hosts: [String], environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> SigV4RequestSigner {
        let named = hosts.first.flatMap(awsHost)
        guard let region = auth.region ?? named?.region ?? AWSSettings.region(configured: c.input.region, environment: environment) else {
            throw ConfigError(
                file: c.file, key: "output.elasticsearch.aws_auth.region",
                message: "no region: set it, or input.aws_region, AWS_REGION or a profile region (the host name does not say one)")
        }
        let provider = credentialProvider(c, region: region, http: HTTPClient(), role: auth.roleARN, externalID: auth.externalID, environment: environment)
        return SigV4RequestSigner(credentials: provider, region: region, service: auth.service ?? named?.service ?? "es")
    }

    /// The region and service an Amazon OpenSearch endpoint's host name says: `<name>.<region>.es.amazonaws.com`
    /// or `<id>.<region>.aoss.amazonaws.com`.
    static func awsHost(_ url: String) -> (region: String, service: String)? {
        guard let host = URLComponents(string: url.contains("://") ? url : "https://" + url)?.host else { return nil }
        var labels = host.lowercased().split(separator: ".")
        if labels.last == "cn" { labels.removeLast() }  // amazonaws.com.cn
        guard labels.count >= 5, labels[labels.count - 2] == "amazonaws", labels.last == "com" else { return nil }
        let service = labels[labels.count - 3]
        guard service == "es" || service == "aoss" else { return nil }
        return (String(labels[labels.count - 4]), String(service))
    }

    /// The credential chain for `input` (profile, STS endpoint), with `input.role_arn` assumed on top.
    static func credentialProvider(
        _ c: Config, region: String, http: HTTPClient, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> any CredentialProvider {
        credentialProvider(c, region: region, http: http, role: c.input.roleARN, externalID: c.input.externalID, environment: environment)
    }

    /// The input's credential chain (profile, STS endpoint) with `role` assumed on top when given.
    static func credentialProvider(
        _ c: Config, region: String, http: HTTPClient, role: String?, externalID: String?, environment: [String: String]
    ) -> any CredentialProvider {
        var settings = CredentialChain.Settings()
        settings.environment = environment
        settings.profile = c.input.profile
        settings.region = region
        settings.stsEndpoint = AWSSettings.endpoint(service: "sts", configured: c.input.endpoint)
        let chain = CredentialChain(settings: settings, http: http)
        guard let role else { return chain }
        return AssumedRoleProvider(base: chain, roleArn: role, externalID: externalID, http: http, region: region, endpoint: settings.stsEndpoint)
    }

    /// The region: configuration, environment, profile, the queue URL's host, or instance metadata.
    static func region(_ c: Config, http: HTTPClient, environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> String {
        if let r = AWSSettings.region(configured: c.input.region, environment: environment) { return r }
        if let url = c.input.sqsURL, let host = URL(string: url)?.host {
            let parts = host.split(separator: ".")
            if parts.count >= 4, parts[0] == "sqs" { return String(parts[1]) }
        }
        if !IMDS.disabled(environment), let r = try? await IMDS.region(http, endpoint: environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"]) { return r }
        throw ConfigError(
            file: c.file, key: "input.aws_region",
            message: "no region: set input.aws_region, AWS_REGION or a profile region"
                + (IMDS.disabled(environment) ? " (instance metadata is disabled by AWS_EC2_METADATA_DISABLED)" : ""))
    }

    /// What `-b` names: `s3://bucket[/prefix]`, a bucket name, or a local copy (a directory path or
    /// `file://…`, which must exist: a typo is an error, not a bucket of that name).
    public enum BackfillTarget: Equatable, Sendable {
        case bucket(String, prefix: String?)
        case local(String)

        public struct Invalid: Error, CustomStringConvertible {
            public var description: String
        }

        public static func parse(_ text: String) throws -> BackfillTarget {
            if text.hasPrefix("s3://") {
                let rest = text.dropFirst("s3://".count)
                let bucket = String(rest.prefix { $0 != "/" })
                guard isBucketName(bucket) else { throw Invalid(description: "'\(bucket)' in '\(text)' is not a bucket name") }
                let prefix = rest.dropFirst(bucket.count).drop { $0 == "/" }
                return .bucket(bucket, prefix: prefix.isEmpty ? nil : String(prefix))
            }
            let local = text.hasPrefix("file://") ? String(text.dropFirst("file://".count)) : text
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: local, isDirectory: &isDir) {
                guard isDir.boolValue else { throw Invalid(description: "'\(local)' is a file: -b takes a directory (a local copy of the bucket) or a bucket") }
                return .local(local)
            }
            if text.hasPrefix("file://") || text.contains("/") || text.hasPrefix(".") || text.hasPrefix("~") {
                throw Invalid(description: "directory not found: \(local)")
            }
            guard isBucketName(text) else {
                throw Invalid(description: "'\(text)' is neither an existing directory nor a bucket name (3–63 letters, digits, '.', '-')")
            }
            return .bucket(text, prefix: nil)
        }

        /// S3's bucket naming rules, with the upper case and underscores of legacy us-east-1 buckets.
        static func isBucketName(_ s: String) -> Bool {
            (3...255).contains(s.count) && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
        }
    }

    /// What to backfill (`-b`), if anything.
    public struct BackfillRequest: Sendable {
        /// A bucket name, or a local directory (an existing path, or `file://…`).
        public var target: String
        public var options: Backfill.Options
        public init(target: String, options: Backfill.Options) {
            self.target = target
            self.options = options
        }
        var localRoot: String? {
            if target.hasPrefix("file://") { return String(target.dropFirst("file://".count)) }
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: target, isDirectory: &isDir) && isDir.boolValue ? target : nil
        }
    }

    /// Opens everything and runs until stopped or drained. Returns the process exit code.
    public static func run(config c: Config, drain: Bool, backfill request: BackfillRequest? = nil, logger: Logger) async throws -> Int32 {
        // Every download of the fetch pool in flight, and room for SQS, STS and the rest beside them.
        var transfers = HTTPClient.Configuration()
        transfers.maxConcurrent = c.input.fetchConcurrency + 16
        let http = HTTPClient(configuration: transfers)
        for warning in c.warnings() { logger.warning("\(warning)") }
        if let request, let root = request.localRoot {
            // A local copy needs no AWS at all (unless its keys are to be enqueued).
            guard !request.options.enqueue else {
                throw ConfigError(file: c.file, key: "input.sqs_url", message: "--enqueue sends S3 keys to a queue; it needs a bucket, not a local directory")
            }
            let journal = try openJournal(c)
            defer { journal.close() }
            if c.integrity.enabled {
                logger.notice("integrity: a local copy's digests cannot be verified (aws s3 sync drops their signatures): its logs ship unchecked; run cloudtrailbeat verify against the bucket")
            }
            let backfill = Backfill(source: LocalSource(root: root), options: request.options, journal: journal, sqs: nil, logger: logger)
            let engine = Engine(config: c, options: .init(drain: true), journal: journal, sqs: nil, s3: nil, outputs: try outputs(c), http: http, logger: logger, backfill: backfill)
            try await runWithSignals(engine, c, http, logger)
            return 0
        }
        if let request, request.options.enqueue, !c.input.policy.topics.isEmpty {
            // Enqueued keys go straight to the queue; consumers that only accept SNS topics would
            // quarantine every one of them.
            throw ConfigError(
                file: c.file, key: "input.topics",
                message: "--enqueue sends notifications straight to input.sqs_url, not through SNS, and instances with input.topics refuse messages that did not come through one of those topics: backfill without --enqueue, or run the fleet that shares it without input.topics")
        }
        if let request, request.localRoot == nil, let refusal = c.input.policy.refusal(bucket: request.target) {
            throw ConfigError(file: c.file, key: "input.buckets", message: "-b: \(refusal)")
        }
        if request == nil, let bucket = c.input.bucket, let refusal = c.input.policy.refusal(bucket: bucket) {
            throw ConfigError(file: c.file, key: "input.bucket_arn", message: refusal)
        }
        let polling = request == nil && c.input.bucket != nil
        guard let queue = c.input.sqsURL ?? (polling || (request != nil && request?.options.enqueue == false) ? "" : nil) else {
            throw ConfigError(file: c.file, key: "input.sqs_url", message: request == nil ? "missing: the SQS queue that receives the CloudTrail notifications" : "missing: --enqueue sends notifications to input.sqs_url")
        }
        let aws = try await AWSAccess(c, http: http)
        let region = aws.region
        let sqsEndpoint = AWSSettings.endpoint(service: "sqs", configured: c.input.endpoint)
            ?? (queue.isEmpty ? "https://sqs.\(region).amazonaws.com" : nil)
            ?? URL(string: queue).flatMap { u in u.host.map { "\(u.scheme ?? "https")://\($0)\(u.port.map { ":\($0)" } ?? "")" } }
            ?? "https://sqs.\(region).amazonaws.com"
        let sqs = SQSClient(service: aws.service("sqs", endpoint: sqsEndpoint), queueURL: queue)
        let s3 = aws.s3

        let journal = try openJournal(c)
        defer { journal.close() }
        if let request {
            var o = request.options
            o.digests = c.integrity.enabled
            let backfill = Backfill(source: S3Source(client: s3, bucket: request.target), options: o, journal: journal, sqs: request.options.enqueue ? sqs : nil, logger: logger)
            let engine = Engine(
                config: c, options: .init(drain: true), journal: journal, sqs: nil, s3: s3, outputs: request.options.enqueue ? [] : try outputs(c), http: http, logger: logger,
                backfill: backfill, digestCheck: try integrityCheck(c, aws, journal))
            try await runWithSignals(engine, c, http, logger)
            return 0
        }
        if polling, let bucket = c.input.bucket {
            // Bucket polling (input.bucket_arn): a listing pass every bucket_list_interval, shipping what
            // arrived since the previous pass; --drain stops after one pass.
            var o = Backfill.Options()
            o.prefix = c.input.bucketListPrefix
            o.polling = true
            o.policy = c.input.policy
            o.workers = c.input.workers
            o.maxPending = max(256, 4 * c.input.fetchConcurrency)
            o.digests = c.integrity.enabled
            let backfill = Backfill(source: S3Source(client: s3, bucket: bucket), options: o, journal: journal, sqs: nil, logger: logger)
            let engine = Engine(
                config: c, options: .init(drain: drain), journal: journal, sqs: nil, s3: s3, outputs: try outputs(c), http: http, logger: logger,
                backfill: backfill, pollInterval: c.input.bucketListInterval, digestCheck: try integrityCheck(c, aws, journal))
            try await runWithSignals(engine, c, http, logger)
            return 0
        }
        // SNS signatures: on against AWS (a VPC endpoint included); off by default against a loopback stand-in.
        var snsVerifier: SNSSignatureVerifier?
        if c.verifiesSNSSignatures() {
            snsVerifier = SNSSignatureVerifier(settings: c.input.snsSignature)
        } else if c.input.verifySNSSignatures == nil && c.input.policy.topics.isEmpty {
            logger.info("SNS signatures are not verified: the queue's endpoint is a loopback stand-in (set input.sns_signature: true to verify)")
        }
        let engine = Engine(
            config: c, options: .init(drain: drain), journal: journal, sqs: sqs, s3: s3, outputs: try outputs(c), http: http, logger: logger,
            snsVerifier: snsVerifier, digestCheck: try integrityCheck(c, aws, journal))
        try await runWithSignals(engine, c, http, logger)
        return 0
    }

    /// The input's AWS access: region, credential chain, retry policy, and the S3 client of `input`.
    struct AWSAccess {
        let http: HTTPClient
        let region: String
        let credentials: any CredentialProvider
        var retry = RetryPolicy()
        let s3: S3Client

        init(_ c: Config, http: HTTPClient) async throws {
            self.http = http
            region = try await Bootstrap.region(c, http: http)
            credentials = Bootstrap.credentialProvider(c, region: region, http: http)
            if let attempts = try AWSSettings.maxAttempts() { retry.maxAttempts = attempts }
            let custom = AWSSettings.endpoint(service: "s3", configured: c.input.endpoint)
            s3 = S3Client(
                service: AWSService(http: http, service: "s3", region: region, endpoint: custom ?? "https://s3.\(region).amazonaws.com", credentials: credentials, retry: retry),
                pathStyle: c.input.pathStyle ?? (custom != nil))
        }

        func service(_ name: String, region: String? = nil, endpoint: String) -> AWSService {
            AWSService(http: http, service: name, region: region ?? self.region, endpoint: endpoint, credentials: credentials, retry: retry)
        }
    }

    /// `verify`: CloudTrail's log-file validation of a bucket (Integrity), with the public keys from
    /// files (`--public-keys`, `integrity.public_keys_file`) or else from `ListPublicKeys` in each
    /// digest's region (`AWS_ENDPOINT_URL_CLOUDTRAIL` for a stand-in).
    public static func verify(
        config c: Config, bucket: String, options: Verify.Options, publicKeyFiles: [String], progress: @escaping @Sendable (String) -> Void
    ) async throws -> (AuditReport, Verify.Counts) {
        if let refusal = c.input.policy.refusal(bucket: bucket) { throw ConfigError(file: c.file, key: "input.buckets", message: "-b: \(refusal)") }
        let http = HTTPClient()
        let aws = try await AWSAccess(c, http: http)
        let keys = try publicKeys(c, aws, files: publicKeyFiles)
        let fetch: @Sendable (String, Date, Date) async throws -> PublicKeySet = { region, from, to in
            if let fixed = keys.fixed { return fixed }
            return try PublicKeySet(pages: try await keys.pages(region, from, to), source: "ListPublicKeys in \(region)")
        }
        return try await Verify(s3: aws.s3, bucket: bucket, options: options, publicKeys: fetch, progress: progress).run()
    }

    /// CloudTrail's public keys: from files (`--public-keys`, `integrity.public_keys_file`) when given,
    /// else the pages of `ListPublicKeys` in the region asked for (`AWS_ENDPOINT_URL_CLOUDTRAIL` for a
    /// stand-in).
    static func publicKeys(_ c: Config, _ aws: AWSAccess, files: [String] = []) throws -> (fixed: PublicKeySet?, pages: @Sendable (String, Date, Date) async throws -> [[UInt8]]) {
        let paths = files + (c.integrity.publicKeysFile.map { [$0] } ?? [])
        var fixed: PublicKeySet?
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError(file: c.file, key: "integrity.public_keys_file", message: "cannot read '\(path)'") }
            do {
                var set = fixed ?? PublicKeySet()
                set.merge(try PublicKeySet(json: Array(data), source: path))
                fixed = set
            } catch let e as PublicKeySet.Invalid {
                throw ConfigError(file: c.file, key: "integrity.public_keys_file", message: e.description)
            }
        }
        return (fixed, { region, from, to in
            let endpoint = AWSSettings.endpoint(service: "cloudtrail", configured: nil) ?? "https://cloudtrail.\(region).amazonaws.com"
            return try await CloudTrailClient(service: aws.service("cloudtrail", region: region, endpoint: endpoint)).listPublicKeys(from: from, to: to)
        })
    }

    /// Continuous validation (`integrity.enabled`) for an engine that reads S3 (nil when off).
    static func integrityCheck(_ c: Config, _ aws: AWSAccess, _ journal: Journal) throws -> DigestCheck? {
        guard c.integrity.enabled else { return nil }
        let keys = try publicKeys(c, aws)
        return DigestCheck(s3: aws.s3, journal: journal, keys: PublicKeyCache(fixed: keys.fixed, journal: journal, fetch: keys.pages))
    }


    static func openJournal(_ c: Config) throws -> Journal {
        var options = Journal.Options()
        options.outputs = c.outputNames
        options.maxSize = c.journal.maxSize
        options.doneRetention = Int64(c.journal.doneRetentionSeconds) * 1000
        options.integrityRetention = Int64(c.integrity.retentionSeconds) * 1000
        options.maxQuarantineEntries = c.journal.maxQuarantineEntries
        options.exclusive = true
        return try Journal(path: c.journal.path, options: options)
    }

    /// Runs the engine in a `ServiceGroup` beside the metrics endpoint and the spot-notice watch.
    ///
    /// SIGTERM and SIGINT shut the group down gracefully: the engine first (intake stops, in-flight work
    /// reaches its next checkpoint), then the watch, then the endpoint. The engine ending by itself
    /// (`--drain`, a finished backfill) or a spot notice does the same. After `shutdown_timeout` the
    /// group cancels what is left; the process then exits 0 and the journal resumes the rest.
    static func runWithSignals(_ engine: Engine, _ c: Config, _ http: HTTPClient, _ logger: Logger) async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if c.http.enabled {
            let server = try MetricsServer(host: c.http.host, port: c.http.port) { engine.metricsText() }
            logger.info("metrics at http://\(c.http.host):\(server.port)/metrics")
            services.append(.init(service: MetricsService(server: server), successTerminationBehavior: .gracefullyShutdownGroup))
        }
        if c.spotInterruption {
            services.append(.init(service: SpotInterruptionWatch(http: http, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(service: engine, successTerminationBehavior: .gracefullyShutdownGroup))
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = .milliseconds(Int64(c.shutdownTimeout * 1000))
        // A last resort should cancellation itself hang (a receiver blocking a socket write): every
        // committed transition is durable, so exiting is as safe as a crash, and quicker to recover from.
        let watchdog = Task {
            while !engine.isStopping { try await Task.sleep(nanoseconds: 100_000_000) }
            try await Task.sleep(nanoseconds: UInt64((c.shutdownTimeout + 5) * 1e9))
            logger.warning("shutdown_timeout passed and cancellation did not finish: exiting; the journal resumes the rest")
            exit(0)
        }
        defer { watchdog.cancel() }
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch is CancellationError where engine.isStopping {
            logger.warning("shutdown_timeout reached: in-flight work was cancelled; the journal resumes the rest")
        }
    }
}

/// The metrics endpoint as a service: serves until the group shuts down.
struct MetricsService: Service {
    let server: MetricsServer

    func run() async throws {
        defer { server.stop() }
        try? await gracefulShutdown()
    }
}

/// Polls the EC2 spot interruption notice (IMDS `spot/instance-action`) every five seconds; a notice
/// ends this service, and with it (gracefully) the group.
struct SpotInterruptionWatch: Service {
    let http: HTTPClient
    let logger: Logger
    var interval: UInt64 = 5_000_000_000

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if let notice = try? await IMDS.spotInterruption(http) {
                    logger.warning("spot interruption notice: shutting down", metadata: ["notice": "\(notice)"])
                    return
                }
                try? await Task.sleep(nanoseconds: interval)
            }
        }
    }
}
