import Stages

/// The event Elastic's AWS integration expects in `logs-aws.cloudtrail-*` (codec `elastic_integration`):
/// the record as Filebeat's `aws-s3` input hands it over, untouched, as the string `message`, with where
/// it came from. The integration's own ingest pipeline (the data stream's default pipeline) parses
/// `message` and does the ECS mapping, so its detection rules and dashboards see exactly what they
/// expect, version for version. Only what the input knows is added: `@timestamp` (the record's
/// `eventTime`, which the pipeline sets again), `aws.s3`, `cloud.provider` and `cloud.region`, and
/// `log.file.path` (the object's URL).
enum IntegrationMapper {
    static func write(tree t: RecordTree, builder: EventBuilder, object: ObjectContext, record: RecordView, into w: inout JSONWriter) -> EventInfo {
        let f = RecordFields(t)
        w.open()
        w.key("@timestamp")
        w.out.append(UInt8(ascii: "\""))
        let fallback = builder.appendTimestamp(record, to: &w.out)
        w.out.append(UInt8(ascii: "\""))
        w.stringOfJSON("message", record.bytes)
        w.open("aws")
        w.key("s3")
        w.out.append(contentsOf: object.ecsS3)
        w.close()
        w.open("cloud")
        w.constant("provider", "aws")
        if let region = f.str(f.awsRegion) { w.escaped("region", t.raw(region)) }
        w.close()
        w.open("log")
        w.open("file")
        object.uri.withUnsafeBytes { w.escaped("path", $0) }
        w.close()
        w.close()
        if fallback { w.strings("tags", [EventBuilder.fallbackTag]) }
        w.close()
        return EventInfo(id: builder.id(record), timestampFallback: fallback)
    }
}
