import ArgumentParser
import Engine
import Failures
import Foundation
import Journal
import Logging

@main
struct CloudTrailBeat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cloudtrailbeat",
        abstract: "A crash-safe shipper of AWS CloudTrail logs.",
        version: "cloudtrailbeat \(Release.version)",
        subcommands: [Run.self, VerifyCommand.self, JournalCommand.self, TestCommand.self, VersionCommand.self],
        defaultSubcommand: Run.self)

    /// ArgumentParser's own entry, except that `verify` exits 2 on a usage error (64 elsewhere), as it
    /// documents: 0 verified, 1 findings, 2 could not verify.
    static func main() async {
        // A write to a peer that reset (a TLS close_notify, OpenSSL's writes) is a failed delivery to retry, not the end of the process.
        signal(SIGPIPE, SIG_IGN)
        ProcessGuards.apply()
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand { try await command.run() } else { try command.run() }
        } catch {
            if CommandLine.arguments.dropFirst().first == "verify", exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// `-c FILE` and `-E key=value` overrides, for the commands that read a configuration.
struct ConfigSource: ParsableArguments {
    @Option(name: .customShort("c"), help: "The configuration file.")
    var config: String = "cloudtrailbeat.yml"

    @Option(name: .customShort("E"), help: ArgumentHelp("Override a setting: -E key=value (a dotted key, a YAML value); repeatable.", valueName: "key=value"))
    var overrides: [String] = []

    func load() throws -> Config { try loadConfig(config, overrides: overrides) }
}

/// `cloudtrailbeat test config`: check a configuration before running it.
struct TestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test", abstract: "Check before you run.", subcommands: [ConfigCheckCommand.self, OutputCheckCommand.self])

    struct ConfigCheckCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "config",
            abstract: "Parse and validate the configuration, resolve the region and the credentials, and print the effective settings (secrets masked).",
            discussion: "Exit 0 when a run could start with it, 1 otherwise.")

        @OptionGroup var source: ConfigSource
        @Flag(help: "List every configuration key with its default and what it takes (from the configuration's tables; no file is read).")
        var keys = false

        func run() async throws {
            if keys {
                print(Config.keyReference.joined(separator: "\n"))
                return
            }
            let c = try source.load()
            let report = await ConfigCheck.run(c)
            print(report.lines.joined(separator: "\n"))
            if !report.problems.isEmpty {
                for p in report.problems { FileHandle.standardError.write(Data("cloudtrailbeat: \(p)\n".utf8)) }
                throw ExitCode(1)
            }
            print("config OK")
        }
    }
}

extension TestCommand {
    struct OutputCheckCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "output",
            abstract: "Connect and authenticate to each configured output and say what answered (no event is sent).",
            discussion: "Exit 0 when every destination answered, 1 otherwise.")

        @OptionGroup var source: ConfigSource

        func run() async throws {
            let c = try source.load()
            let (lines, ok) = try await OutputCheck.run(c)
            print(lines.joined(separator: "\n"))
            if !ok { throw ExitCode(1) }
            print("outputs OK")
        }
    }
}

/// `cloudtrailbeat version`: the same line as `--version`.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version.")
    func run() { print("cloudtrailbeat \(Release.version)") }
}

/// Queue mode (the default): `cloudtrailbeat -c <config.yml> [-d "<selectors>"] [-e] [--drain]`.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the queue mode (the default).",
        discussion: "Polls input.sqs_url for CloudTrail notifications, ships every record to the configured outputs "
            + "and deletes a message once every output acknowledged all of its records.")

    @Option(name: .customShort("c"), help: "The configuration file.")
    var config: String = "cloudtrailbeat.yml"

    @Option(name: .customShort("E"), help: ArgumentHelp("Override a setting: -E key=value (a dotted key, a YAML value); repeatable.", valueName: "key=value"))
    var overrides: [String] = []

    @Option(name: .customShort("d"), help: "Debug logging for these stages, comma-separated: receive, fetch, emit, delete, visibility, backfill (\"*\" for all).")
    var selectors: String?

    @Flag(name: .customShort("e"), help: "Log to stderr (the default; accepted for compatibility).")
    var stderr = false

    @Flag(help: "Exit 0 once a long poll returns no message and no journaled work is left.")
    var drain = false

    @Option(name: .customShort("b"), help: "Backfill: walk existing logs in this bucket (or local directory, or file://…) instead of the queue.")
    var backfill: String?

    @Option(name: .customShort("p"), help: "Backfill prefix (e.g. a trail's prefix, or AWSLogs/o-…/123456789012/).")
    var prefix: String?

    @Option(name: .customShort("f"), help: ArgumentHelp("Alias of -p (the original README's spelling).", visibility: .hidden))
    var prefixAlias: String?

    @Option(help: "Backfill only logs from this day on (YYYY-MM-DD, UTC).")
    var since: String?

    @Option(help: "Backfill only logs up to this day (YYYY-MM-DD, UTC; default today).")
    var until: String?

    @Flag(help: "Backfill objects again even when a done marker says they were shipped.")
    var force = false

    @Flag(help: "Backfill by sending notifications to input.sqs_url, for a fleet to share (resumable).")
    var enqueue = false

    @Option(help: "Backfill listing page size (ListObjectsV2 max-keys).")
    var pageSize: Int = 1000

    func validate() throws {
        for name in (selectors ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() })
        where name != "*" && !SelectorLogHandler.stages.contains(name) {
            throw ValidationError("-d: '\(name)' is not a stage: \(SelectorLogHandler.stages.joined(separator: ", ")) or *")
        }
        if backfill == nil && (prefix != nil || prefixAlias != nil || since != nil || until != nil || force || enqueue) {
            throw ValidationError("-p, --since, --until, --force and --enqueue go with -b <bucket>")
        }
        if let since, Run.day(since) == nil { throw ValidationError("--since '\(since)' is not a date (YYYY-MM-DD)") }
        if let until, Run.day(until) == nil { throw ValidationError("--until '\(until)' is not a date (YYYY-MM-DD)") }
        if let from = since.flatMap(Run.day), let to = until.flatMap(Run.day), from > to {
            throw ValidationError("--since \(since!) is after --until \(until!): the window would be empty")
        }
        if let backfill {
            do {
                if case .bucket(_, let p?) = try Bootstrap.BackfillTarget.parse(backfill), let other = prefix ?? prefixAlias, other != p {
                    throw ValidationError("-b \(backfill) names the prefix '\(p)' and -p names '\(other)': give it once")
                }
            } catch let e as Bootstrap.BackfillTarget.Invalid {
                throw ValidationError("-b: \(e)")
            }
        }
        guard (1...1000).contains(pageSize) else { throw ValidationError("--page-size must be 1 to 1000") }
    }

    static func day(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd"
        return f.date(from: String(s.prefix(10)))
    }

    func run() async throws {
        let c = try loadConfig(config, overrides: overrides)
        // -d "<selectors>" means debug for those stages (as Filebeat's -d); otherwise logging.level and logging.selectors.
        let level: Logger.Level = selectors != nil ? .debug : Logger.Level(rawValue: c.logging.level) ?? .info
        let chosen = selectors.map { $0.split(separator: ",").map(String.init) } ?? c.logging.selectors
        LoggingSystem.bootstrap { label in SelectorLogHandler(label: label, level: level, selectors: chosen, json: c.logging.json) }
        let logger = Logger(label: "cloudtrailbeat")
        do {
            var request: Bootstrap.BackfillRequest?
            if let backfill {
                var o = Backfill.Options()
                o.prefix = prefix ?? prefixAlias ?? ""
                var target = backfill
                switch try Bootstrap.BackfillTarget.parse(backfill) {
                case .bucket(let bucket, let p):
                    target = bucket
                    if let p { o.prefix = p }
                case .local(let path):
                    target = "file://" + path
                }
                o.since = since.flatMap(Run.day)
                o.until = until.flatMap(Run.day).map { $0.addingTimeInterval(86399) }
                if o.until != nil && o.since == nil { o.since = Run.day("2013-11-01") }  // CloudTrail's first logs
                o.force = force
                o.enqueue = enqueue
                o.pageSize = pageSize
                o.workers = c.input.workers
                o.maxPending = max(256, 4 * c.input.fetchConcurrency)
                o.policy = c.input.policy
                request = Bootstrap.BackfillRequest(target: target, options: o)
            }
            let code = try await Bootstrap.run(config: c, drain: drain, backfill: request, logger: logger)
            if code != 0 { throw ExitCode(code) }
        } catch let e as ConfigError {
            fail("configuration error: \(e)")
        } catch let e as JournalError {
            fail(e, else: "journal unusable: ")
        } catch let e as ExitCode {
            throw e
        } catch {
            fail("stopped: \(error)")
        }
    }
}

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Validate CloudTrail log files against their signed digests (as aws cloudtrail validate-logs, for every trail at once).",
        discussion: "Exit 0 when every digest and log verifies, 1 when anything does not, 2 on usage or configuration errors.")

    @Option(name: .customShort("c"), help: "The configuration file (AWS access: input.aws_region, profile, role_arn, endpoint).")
    var config: String = "cloudtrailbeat.yml"

    @Option(name: .customShort("E"), help: ArgumentHelp("Override a setting: -E key=value; repeatable.", valueName: "key=value"))
    var overrides: [String] = []

    @Option(name: .customShort("b"), help: "The bucket (or s3://bucket/prefix).")
    var bucket: String

    @Option(name: .customShort("p"), help: "Only under this prefix (a trail's prefix, or AWSLogs/<account>/).")
    var prefix: String?

    @Option(help: "Logs delivered from this day on (YYYY-MM-DD, UTC).")
    var since: String?

    @Option(help: "Logs delivered up to this day (YYYY-MM-DD, UTC; default now).")
    var until: String?

    @Option(name: .customLong("public-keys"), help: "What `aws cloudtrail list-public-keys` printed (repeatable), instead of calling ListPublicKeys.")
    var publicKeys: [String] = []

    @Option(help: "Requests in flight.")
    var concurrency: Int = 32

    @Option(help: "Keep the hashes of the logs fetched in this file, and resume from it: logs it holds are not fetched again.")
    var state: String?

    @Flag(help: "Print one JSON object: {\"digests\": {valid, invalid, missing}, \"logs\": {valid, modified, missing, not_covered}}.")
    var json = false

    func validate() throws {
        if let since, Run.day(since) == nil { throw ValidationError("--since '\(since)' is not a date (YYYY-MM-DD)") }
        if let until, Run.day(until) == nil { throw ValidationError("--until '\(until)' is not a date (YYYY-MM-DD)") }
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 256") }
        for file in publicKeys where !FileManager.default.isReadableFile(atPath: file) { throw ValidationError("--public-keys: cannot read '\(file)'") }
        do {
            if case .local = try Bootstrap.BackfillTarget.parse(bucket) {
                throw ValidationError("-b \(bucket): verify needs the bucket itself; a local copy lost the digests' signatures (S3 object metadata)")
            }
        } catch let e as Bootstrap.BackfillTarget.Invalid {
            throw ValidationError("-b: \(e)")
        }
    }

    func run() async throws {
        let c: Config
        do { c = try Config.load(path: config, overrides: overrides, requireOutput: false) } catch let e as ConfigError {
            FileHandle.standardError.write(Data("cloudtrailbeat: configuration error: \(e)\n".utf8))
            throw ExitCode(2)
        }
        var o = Verify.Options()
        var target = bucket
        if case .bucket(let b, let p) = try Bootstrap.BackfillTarget.parse(bucket) {
            target = b
            o.prefix = p ?? ""
        }
        if let prefix { o.prefix = prefix }
        o.since = since.flatMap(Run.day)
        o.until = until.flatMap(Run.day).map { $0.addingTimeInterval(86399) }
        o.concurrency = concurrency
        o.statePath = state
        let quiet = json
        let started = Date()
        do {
            let (report, counts) = try await Bootstrap.verify(config: c, bucket: target, options: o, publicKeyFiles: publicKeys) { line in
                if !quiet { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            }
            if json {
                FileHandle.standardOutput.write(Data(report.json() + [0x0a]))
            } else {
                print(Verify.summary(report, counts, seconds: Date().timeIntervalSince(started)))
            }
            if !report.isClean { throw ExitCode(1) }
        } catch let e as ConfigError {
            FileHandle.standardError.write(Data("cloudtrailbeat: configuration error: \(e)\n".utf8))
            throw ExitCode(2)
        } catch let e as ExitCode {
            throw e
        } catch {
            FileHandle.standardError.write(Data("cloudtrailbeat: verify failed: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// Prints `message` (a URL's password masked) on standard error and exits with `status`.
func fail(_ message: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("cloudtrailbeat: \(redactingUserinfo(message))\n".utf8))
    exit(status)
}

/// A journal error: a damaged journal's description (it names the path and what to do) and exit
/// ``ProcessGuards/journalDamaged``; any other after `prefix`, exit 1.
func fail(_ error: JournalError, else prefix: String = "error: ") -> Never {
    error.code == .damaged ? fail("\(error)", status: ProcessGuards.journalDamaged) : fail(prefix + "\(error)")
}

func loadConfig(_ path: String, overrides: [String] = []) throws -> Config {
    do {
        return try Config.load(path: path, overrides: overrides)
    } catch let e as ConfigError {
        fail("configuration error: \(e)")
    }
}

struct JournalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Inspect and maintain the on-disk journal.",
        subcommands: [Status.self, GC.self, Retry.self])

    struct Location: ParsableArguments {
        @Option(name: .customShort("c"), help: "The configuration file (its journal.path is used).")
        var config: String?

        @Option(name: [.customLong("path")], help: "The journal directory (instead of -c).")
        var path: String?

        @Option(name: .customShort("E"), help: ArgumentHelp("Override a setting: -E key=value; repeatable.", valueName: "key=value"))
        var overrides: [String] = []

        /// The journal directory, and the configuration when it came from one.
        func resolve() throws -> (path: String, config: Config?) {
            if let path { return (path, nil) }
            let c = try loadConfig(config ?? "cloudtrailbeat.yml", overrides: overrides)
            return (c.journal.path, c)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show counts per stage, quarantined items with reasons, backfill jobs, the oldest unacknowledged item and disk use.")

        @OptionGroup var location: Location

        @Flag(help: "Print one JSON object instead of text.")
        var json = false

        func run() async throws {
            do {
                let (path, config) = try location.resolve()
                let report = try JournalInspector.status(path: path, maxSize: config?.journal.maxSize)
                print(json ? report.json() : report.text())
            } catch let error as JournalError {
                fail(error)
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put quarantined items back to work once their cause is mended (no engine may be running).",
            discussion: """
                Each item is named as `journal status` shows it: s3://bucket/key (or the bare key) for an object, \
                the message id for a message (its objects too). A quarantined message's kept body is decoded \
                again and the objects it names are journaled. The next run ships them.
                """)

        @OptionGroup var location: Location

        @Argument(help: "Objects (s3://bucket/key or key) or message ids.")
        var items: [String] = []

        @Flag(help: "Every quarantined item.")
        var all = false

        func validate() throws {
            if all == !items.isEmpty { throw ValidationError("name the items to retry, or --all (not both)") }
        }

        func run() async throws {
            do {
                let (path, config) = try location.resolve()
                let r = try await JournalMaintenance.retry(
                    path: path, selectors: items, all: all, maxKeys: config?.input.maxKeysPerMessage)
                print("requeued \(r.requeued) object(s), \(r.inProgress) already in progress, \(r.alreadyDone) already shipped; \(r.cleared) quarantine entr\(r.cleared == 1 ? "y" : "ies") cleared")
                for k in r.kept { print("kept: \(k)") }
                if r.requeued > 0 { print("the next run of cloudtrailbeat ships them") }
                if !r.unmatched.isEmpty {
                    fail("nothing in the quarantine matches \(r.unmatched.map { "'\($0)'" }.joined(separator: ", ")) (see journal status)")
                }
            } catch let error as JournalError {
                fail(error)
            }
        }
    }

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Free stored bodies of finished objects and expired done markers now (no engine may be running).",
            discussion: "Done markers expire after the configuration's journal.done_retention (with --path: the default, 7 days).")

        @OptionGroup var location: Location

        func run() async throws {
            do {
                let (path, config) = try location.resolve()
                let r = try await JournalMaintenance.collect(
                    path: path, doneRetentionSeconds: config?.journal.doneRetentionSeconds, maxQuarantineEntries: config?.journal.maxQuarantineEntries)
                print("freed \(r.chunksFreed) body chunks, removed \(r.objectsRemoved) finished objects, expired \(r.markersExpired) done markers, dropped \(r.quarantineDropped) old quarantine entries")
            } catch let error as JournalError {
                fail(error)
            }
        }
    }
}
