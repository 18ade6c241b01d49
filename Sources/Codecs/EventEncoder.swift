// Codecs: the shape of the events an output receives, and which records it receives.
//
// Invariants:
// 1. `cloudtrail` without a filter is today's event byte for byte: the encoder hands the record to
//    `EventBuilder` without parsing it.
// 2. Every codec derives the event id and the time the same way (`EventBuilder.id`, the timestamp
//    fallback rule), so an event keeps its id across codecs and replays stay idempotent at receivers.
// 3. A record the filter drops yields no event, and nothing else: the caller counts it as handled for
//    that output (its cursor moves past it), so it is never replayed and the counts add up.
// 4. Codecs never fail on a record the splitter accepted: a field that is missing or of an unexpected
//    type is left out of the mapped event, never guessed.

import Stages

/// Which schema an output's events follow (`output.<name>.codec`).
public enum CodecKind: String, Sendable, CaseIterable {
    /// The raw record under `cloudtrail`, with `@timestamp`, `type` and `s3` (the default).
    case cloudtrail
    /// Elastic Common Schema, as Elastic's AWS CloudTrail integration maps it.
    case ecs
    /// OCSF 1.x API Activity (6003), Authentication (3002) for console sign-ins.
    case ocsf
    /// The raw record as the string `message`, with `aws.s3`, `cloud` and `log.file.path`: what Elastic's
    /// AWS integration takes into `logs-aws.cloudtrail-*` and maps with its own ingest pipeline.
    case elasticIntegration = "elastic_integration"
    /// The record exactly as CloudTrail wrote it (one line), nothing added: what Splunk's add-on for AWS
    /// parses as sourcetype `aws:cloudtrail`. The time travels beside it (``EventInfo/timestamp``).
    case raw
}

/// An output's codec and its options.
public struct CodecOptions: Sendable, Equatable {
    public var kind: CodecKind
    /// ECS: also carry the raw record as `event.original` (a string).
    public var eventOriginal: Bool

    public init(kind: CodecKind = .cloudtrail, eventOriginal: Bool = false) {
        self.kind = kind
        self.eventOriginal = eventOriginal
    }
}

/// Turns one object's records into one output's events: filter, drop fields, encode. One encoder per
/// (object, output) emit; it reuses its buffers from record to record.
public struct EventEncoder {
    public let options: CodecOptions
    public let filter: RecordFilter?
    let builder: EventBuilder
    /// Only the mapping codecs need it (nil for `cloudtrail`).
    let object: ObjectContext?
    private var tree = RecordTree()
    private var rewritten: [UInt8] = []
    private var writer = JSONWriter(capacity: 4096)

    public init(options: CodecOptions, filter: RecordFilter?, bucket: String, key: String, receivedAt: Int64) {
        self.options = options
        self.filter = filter?.isEmpty == true ? nil : filter
        builder = EventBuilder(bucket: bucket, key: key, receivedAt: receivedAt)
        object = options.kind == .cloudtrail || options.kind == .raw ? nil : ObjectContext(bucket: bucket, key: key)
    }

    /// Appends the record's event to `out` and says what it is; nil when the filter drops the record
    /// (nothing is appended then).
    public mutating func encode(_ record: RecordView, to out: inout [UInt8]) -> EventInfo? {
        if options.kind == .cloudtrail && filter == nil {
            out.reserveCapacity(out.count + record.bytes.count + 640)
            return builder.append(record, to: &out)
        }
        if options.kind == .raw && filter == nil { return appendRaw(record, to: &out) }
        var record = record
        if !record.bytes.isEmpty, !tree.parse(record.bytes) {
            // The splitter validated the record, so this is unreachable in the pipeline; ship it raw
            // rather than lose it.
            return builder.append(record, to: &out)
        }
        if let filter {
            guard filter.keeps(tree) else { return nil }
            rewritten.removeAll(keepingCapacity: true)
            if filter.appendDroppingFields(tree, to: &rewritten) {
                return rewritten.withUnsafeBytes { bytes in
                    _ = tree.parse(bytes)
                    record = RecordView(
                        index: record.index, bytes: bytes, eventTime: span(RecordTree.root, "eventTime"),
                        eventID: span(RecordTree.root, "eventID"))
                    return encodeParsed(record, to: &out)
                }
            }
        }
        return encodeParsed(record, to: &out)
    }

    private func span(_ node: Int, _ name: StaticString) -> Range<Int>? {
        guard let v = tree.member(node, name), tree.kind(v) == .string else { return nil }
        let n = tree.nodes[v]
        return Int(n.start)..<Int(n.end)
    }

    /// Encodes a record whose tree is parsed (and whose bytes are the tree's).
    private mutating func encodeParsed(_ record: RecordView, to out: inout [UInt8]) -> EventInfo {
        switch options.kind {
        case .cloudtrail:
            out.reserveCapacity(out.count + record.bytes.count + 640)
            return builder.append(record, to: &out)
        case .ecs:
            var mapper = ECSMapper(tree: tree, builder: builder, object: object!, record: record, eventOriginal: options.eventOriginal)
            return writing(into: &out, record) { mapper.write(into: &$0) }
        case .ocsf:
            var mapper = OCSFMapper(tree: tree, builder: builder, object: object!, record: record)
            return writing(into: &out, record) { mapper.write(into: &$0) }
        case .raw:
            return appendRaw(record, to: &out)
        case .elasticIntegration:
            return writing(into: &out, record) { [tree, builder, object] in
                IntegrationMapper.write(tree: tree, builder: builder, object: object!, record: record, into: &$0)
            }
        }
    }

    /// The record's bytes on one line; its time (the `@timestamp` rule) in the info.
    private func appendRaw(_ record: RecordView, to out: inout [UInt8]) -> EventInfo {
        JSONText.appendOneLine(record.bytes, to: &out)
        var time: [UInt8] = []
        time.reserveCapacity(24)
        let fallback = builder.appendTimestamp(record, to: &time)
        return EventInfo(id: builder.id(record), timestampFallback: fallback, timestamp: time)
    }

    /// Lends `out` to the writer (no copy), with room for a mapped event (about twice the record).
    private mutating func writing(into out: inout [UInt8], _ record: RecordView, _ body: (inout JSONWriter) -> EventInfo) -> EventInfo {
        writer.reset()
        swap(&writer.out, &out)
        writer.out.reserveCapacity(writer.out.count + 2 * record.bytes.count + 1024)
        let info = body(&writer)
        swap(&writer.out, &out)
        return info
    }
}

/// What the mappings say of the log file itself, worked out once per object.
struct ObjectContext {
    /// ECS's `{"bucket":{"name","arn"},"object":{"key"}}` for `aws.s3` (no ARN for a local copy, whose
    /// "bucket" is a file URL).
    let ecsS3: [UInt8]
    /// The log file as a URI (`s3://bucket/key`, or the local copy's file URL), escaped.
    let uri: [UInt8]

    init(bucket: String, key: String) {
        let local = bucket.utf8.contains(UInt8(ascii: "/"))
        var w = JSONWriter(capacity: 256)
        w.open()
        w.open("bucket")
        w.string("name", bucket)
        if !local { w.string("arn", "arn:aws:s3:::" + bucket) }
        w.close()
        w.open("object")
        w.string("key", key)
        w.close()
        w.close()
        ecsS3 = w.out
        var u: [UInt8] = []
        JSONText.appendEscaped(local ? bucket + "/" + key : "s3://" + bucket + "/" + key, to: &u)
        uri = u
    }
}
