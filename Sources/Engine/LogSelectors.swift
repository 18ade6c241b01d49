import Failures
import Foundation
import Logging
import Stages

/// The pipeline stage a log line comes from: its `source`, and what debug selectors name.
enum LogStage: String, CaseIterable {
    case receive, fetch, emit, delete, visibility, backfill
}

/// Debug selectors, as Filebeat's `-d "fetch,emit"` and `logging.selectors`: debug (and trace) lines
/// pass only for the selected pipeline stages; `*` or an empty list selects all. Lines at info and
/// above always pass.
///
/// A log line's stage is its `source`: `receive`, `fetch`, `emit`, `delete`, `visibility`, `backfill`
/// (lines without one carry their module's name, e.g. `Engine`). Matching ignores case.
///
/// Every line loses the userinfo of any URL in its message or metadata (``redactingUserinfo(_:)``), so a
/// password in an output's host never reaches the log, whichever error quoted it.
public struct SelectorLogHandler: LogHandler {
    /// The stages debug lines come from; they are what `-d` and `logging.selectors` take.
    public static let stages = LogStage.allCases.map(\.rawValue)

    private var inner: StreamLogHandler
    private let selected: Set<String>?  // nil: all
    private let label: String
    private let json: Bool

    /// - Parameter json: one JSON object per line (`logging.json`), for log shippers, instead of text.
    public init(label: String, level: Logger.Level, selectors: [String], json: Bool = false) {
        inner = StreamLogHandler.standardError(label: label)
        inner.logLevel = level
        self.label = label
        self.json = json
        let names = Set(selectors.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty })
        selected = names.isEmpty || names.contains("*") ? nil : names
    }

    /// Text lines have every control character of the message and the metadata escaped
    /// (``UntrustedText``): a key or a message body that holds a newline or an escape cannot forge a
    /// line or move a terminal's cursor. JSON lines are escaped by JSON itself.
    public func log(event: LogEvent) {
        if event.level <= .debug, let selected, !selected.contains(event.source.lowercased()) { return }
        let event = Self.redacted(event)
        guard json else { return inner.log(event: Self.escaped(event)) }
        FileHandle.standardError.write(Data((Self.jsonLine(event, label: label, metadata: inner.metadata) + "\n").utf8))
    }

    /// The event with every control character of its message and metadata escaped.
    static func escaped(_ event: LogEvent) -> LogEvent {
        var event = event
        event.message = "\(UntrustedText.escaped(event.message.description))"
        event.metadata = event.metadata?.mapValues { .string(UntrustedText.escaped("\($0)")) }
        return event
    }

    /// The event with URL userinfo masked in its message, its metadata values and its error (which
    /// moves into the metadata as `error.message` and `error.type`, as the stream handler shows it).
    static func redacted(_ event: LogEvent) -> LogEvent {
        var e = event
        let message = "\(event.message)"
        let masked = redactingUserinfo(message)
        if masked != message { e.message = "\(masked)" }
        var metadata = event.metadata
        if let error = event.error {
            metadata = metadata ?? [:]
            metadata?["error.message"] = .string("\(error)")
            metadata?["error.type"] = .string(String(reflecting: type(of: error)))
            e.error = nil
        }
        if let m = metadata {
            var out = m
            for (key, value) in m {
                let text = "\(value)"
                let masked = redactingUserinfo(text)
                if masked != text { out[key] = .string(masked) }
            }
            e.metadata = out
        }
        return e
    }

    /// `{"@timestamp","log.level","log.logger","stage","message",<metadata>}`, keys sorted.
    static func jsonLine(_ event: LogEvent, label: String, metadata: Logger.Metadata) -> String {
        var object: [String: Any] = [
            "@timestamp": ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime, .withFractionalSeconds]),
            "log.level": event.level.rawValue, "log.logger": label, "stage": event.source, "message": "\(event.message)",
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[key] = "\(value)" }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{\"message\":\"unencodable log line\"}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }
}
