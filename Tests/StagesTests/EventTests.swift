import Foundation
import Testing

@testable import Stages

func build(_ record: String, bucket: String = "trail", key: String = "AWSLogs/1/CloudTrail/us-east-1/2026/11/28/1_CloudTrail_us-east-1_20261128T2205Z_abc.json.gz", receivedAt: Int64 = 1_764_367_200_000, index: Int = 0) throws -> (String, EventInfo, [String: Any]) {
    let text = Array(("{\"Records\":[" + String(repeating: "{},", count: index) + record + "]}").utf8)
    var splitter = RecordSplitter()
    var out: [UInt8] = []
    var info: EventInfo?
    let builder = EventBuilder(bucket: bucket, key: key, receivedAt: receivedAt)
    try text.withUnsafeBytes { b in
        try splitter.push(b) { r in if r.index == UInt64(index) { info = builder.append(r, to: &out) } }
    }
    try splitter.finish()
    let json = try #require(try JSONSerialization.jsonObject(with: Data(out)) as? [String: Any])
    return (String(decoding: out, as: UTF8.self), try #require(info), json)
}

@Suite("Event building")
struct EventTests {
    @Test func shapeAndVerbatimRecord() throws {
        let record = #"{"eventTime":"2026-11-28T22:07:49Z","eventID":"3b5ee8f4-aaaa-bbbb-cccc-000000000001","x":[1, 2.50,"\u00e9"],"n": -0 }"#
        let (text, info, json) = try build(record, bucket: "b\"q", key: "k/a b\\c")
        #expect(text == #"{"@timestamp":"2026-11-28T22:07:49.000Z","type":"CloudTrail","cloudtrail":"# + record + #","s3":{"bucket":"b\"q","key":"k/a b\\c"}}"#)
        #expect(info == EventInfo(id: "3b5ee8f4-aaaa-bbbb-cccc-000000000001", timestampFallback: false))
        #expect(json["type"] as? String == "CloudTrail")
        #expect((json["s3"] as? [String: String]) == ["bucket": "b\"q", "key": "k/a b\\c"])
    }

    @Test(arguments: [
        ("2026-11-28T22:07:49Z", "2026-11-28T22:07:49.000Z"),
        ("2026-11-28T22:07:49.5Z", "2026-11-28T22:07:49.500Z"),
        ("2026-11-28T22:07:49.123456Z", "2026-11-28T22:07:49.123Z"),
        ("2026-11-28T23:30:00+02:00", "2026-11-28T21:30:00.000Z"),
        ("2026-01-01T01:00:00+02:00", "2025-12-31T23:00:00.000Z"),
        ("2024-02-29T12:00:00-05:30", "2024-02-29T17:30:00.000Z"),
        ("2026-11-28T22:07:49", "2026-11-28T22:07:49.000Z"),
        ("2026-11-28t22:07:49z", "2026-11-28T22:07:49.000Z"),
    ])
    func eventTimeForms(eventTime: String, expected: String) throws {
        let (_, info, json) = try build("{\"eventTime\":\"\(eventTime)\"}")
        #expect(json["@timestamp"] as? String == expected)
        #expect(!info.timestampFallback && json["tags"] == nil)
    }

    @Test(arguments: ["", "yesterday", "2026-02-30T00:00:00Z", "2026-11-28T25:00:00Z", "0000-00-00T00:00:00Z", "2026-11-28T22:07:49.Z", "2026-11-28T22:07:49+0200"])
    func unparseableEventTimeFallsBackToTheKeyMinute(eventTime: String) throws {
        let (_, info, json) = try build("{\"eventTime\":\"\(eventTime)\"}")
        #expect(json["@timestamp"] as? String == "2026-11-28T22:05:00.000Z")
        #expect(info.timestampFallback)
        #expect(json["tags"] as? [String] == [EventBuilder.fallbackTag])
    }

    @Test func missingEventTimeWithoutKeyPatternUsesReceivedTime() throws {
        let (_, info, json) = try build("{\"eventName\":\"x\",\"nested\":{\"eventTime\":\"2020-01-01T00:00:00Z\"}}", key: "export/plain.json", receivedAt: 1_764_367_200_123)
        #expect(json["@timestamp"] as? String == "2025-11-28T22:00:00.123Z")
        #expect(info.timestampFallback, "a nested eventTime is not the record's")
    }

    @Test func syntheticIDIsStableAndDistinct() throws {
        let (_, a, _) = try build("{\"eventTime\":\"2026-11-28T22:07:49Z\"}", index: 2)
        let (_, b, _) = try build("{\"eventTime\":\"2026-11-28T22:07:49Z\"}", index: 2)
        let (_, c, _) = try build("{\"eventTime\":\"2026-11-28T22:07:49Z\"}", index: 3)
        #expect(a.id == b.id && a.id != c.id && a.id.count == 32)
        #expect(a.id == EventBuilder.syntheticID(bucket: "trail", key: "AWSLogs/1/CloudTrail/us-east-1/2026/11/28/1_CloudTrail_us-east-1_20261128T2205Z_abc.json.gz", index: 2))
        let (_, escaped, _) = try build("{\"eventID\":\"a\\u0062c\"}")
        #expect(escaped.id.count == 32, "an eventID with escapes is not used raw")
    }

    @Test func formatsEpochAndNegativeTimes() {
        #expect(String(decoding: RFC3339.format(millis: 0), as: UTF8.self) == "1970-01-01T00:00:00.000Z")
        #expect(String(decoding: RFC3339.format(millis: -1), as: UTF8.self) == "1969-12-31T23:59:59.999Z")
        #expect(String(decoding: RFC3339.format(millis: 951_782_400_000), as: UTF8.self) == "2000-02-29T00:00:00.000Z")
    }
}
