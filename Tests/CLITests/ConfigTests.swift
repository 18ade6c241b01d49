import Foundation
import Testing

import Codecs
@testable import Engine
@testable import Outputs
import Stages
import HTTP
import TestSupport

@Suite("Configuration")
struct ConfigTests {
    func error(_ yaml: String) -> String {
        do {
            _ = try Config.parse(yaml, file: "/etc/cloudtrailbeat.yml")
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func aSeedConfigLoadsWithDefaults() throws {
        let c = try Config.parse("""
            input:
              sqs_url: https://sqs.us-east-1.amazonaws.com/123456789012/ct
              aws_region: us-east-1
              no_purge: true
            output.logstash.hosts: ["logstash:5044"]
            output:
              elasticsearch:
                hosts: ["https://es:9200"]
                ssl.verification_mode: none
            journal.max_size: 512MiB
            """, file: "c.yml")
        #expect(c.input.numQueueFetch == 10 && c.input.sleepTime == 0 && c.input.noPurge)
        #expect(c.logstash?.hosts == ["logstash:5044"] && c.elasticsearch?.tls?.verify == false)
        #expect(c.journal.maxSize == 512 << 20)
        #expect(c.input.maxObjectSize == 4 << 30, "input.max_object_size: 4 GiB by default")
        #expect(try Config.parse("input:\n  max_object_size: 256MiB\noutput:\n  console: {}", file: "c.yml").input.maxObjectSize == 256 << 20)
        #expect(c.outputNames == ["elasticsearch", "logstash"])
        #expect(c.workers(forOutput: "elasticsearch") == 2 && c.workers(forOutput: "console") == 1)
        let one = try Config.parse("output:\n  file:\n    path: /tmp/o\n    worker: 1\n  console: {}", file: "c.yml")
        #expect(one.workers(forOutput: "file") == 1)
    }

    @Test(arguments: [
        ("input:\n  visiblity_timeout: 30\noutput:\n  console: {}", "input.visiblity_timeout: unknown key; did you mean 'input.visibility_timeout'?"),
        ("input:\n  num_queue_fetch: 11\noutput:\n  console: {}", "input.num_queue_fetch: 11 is out of range (1–10)"),
        ("input:\n  no_purge: maybe\noutput:\n  console: {}", "input.no_purge: must be true or false"),
        ("outputs:\n  console: {}", "outputs: unknown key; did you mean 'output'?"),
        ("input:\n  sqs_url: not a url\noutput:\n  console: {}", "input.sqs_url: 'not a url' is not a URL"),
        ("journal:\n  max_size: lots\noutput:\n  console: {}", "journal.max_size: 'lots' is not a size"),
        ("journal:\n  max_size: 1MiB\noutput:\n  console: {}", "journal.max_size: 1048576 bytes is less than the minimum, 16 MiB"),
        ("input:\n  max_object_size: 512KiB\noutput:\n  console: {}", "input.max_object_size: 524288 bytes is less than the minimum, 1 MiB"),
        ("input:\n  max_object_size: huge\noutput:\n  console: {}", "input.max_object_size: 'huge' is not a size"),
        ("output:\n  redis:\n    hosts: [a]\n    datatype: set", "output.redis.datatype: 'set' is not one of list, channel"),
        ("journal:\n  path: /tmp/x", "output: no output is configured"),
        ("input: [1, 2]\noutput:\n  console: {}", "input: must be a mapping"),
        ("output:\n  file:\n    path: /tmp/o\n    worker: 0", "output.file.worker: 0 is out of range (1–16)"),
        ("output:\n  console: {}\nlogging:\n  selectors: [fech]", "logging.selectors: 'fech' is not a stage"),
        ("input:\n  sqs_url: [", "not valid YAML"),
        ("output:\n  file:\n    path: /tmp/o\n    codec: ecss", "output.file.codec: 'ecss' is not a codec: one of cloudtrail, ecs, ocsf, elastic_integration, raw; did you mean 'ecs'?"),
        ("output:\n  console:\n    codec:\n      ecs:\n        original: true", "output.console.codec.ecs.original: unknown key; known keys here: event_original"),
        ("output:\n  console:\n    codec:\n      ocsf: {pretty: true}", "output.console.codec.ocsf.pretty: unknown key: the ocsf codec has no options"),
        ("output:\n  console: {}\nfilter:\n  exclude:\n    - eventname: Decrypt", "filter.exclude[0].eventname: 'eventname' is not a CloudTrail record field; did you mean 'eventName'?"),
        ("output:\n  console: {}\nfilter:\n  exclude: {readOnly: true}", "filter.exclude: must be a list of rules"),
        ("output:\n  console: {}\nfilter:\n  exclude:\n    - readOnly: []", "filter.exclude[0].readOnly: must list at least one value"),
        ("output:\n  console: {}\nfilter:\n  excluded: []", "filter.excluded: unknown key; did you mean 'filter.exclude'?"),
        ("output:\n  console:\n    filter:\n      drop_fields: [userIdentity..arn]", "output.console.filter.drop_fields: 'userIdentity..arn' is not a field path"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    index: x\n    data_stream: {}", "output.elasticsearch.index: cannot be set with output.elasticsearch.data_stream"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    data_stream: {dataset: aws-cloudtrail}", "output.elasticsearch.data_stream.dataset: 'aws-cloudtrail' is not a valid dataset"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    data_stream: {namespace: Prod}", "output.elasticsearch.data_stream.namespace: 'Prod' is not a valid namespace"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    data_stream: {kind: logs}", "output.elasticsearch.data_stream.kind: unknown key"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    username: u\n    aws_auth: {region: eu-west-1}", "output.elasticsearch.aws_auth: cannot be combined with output.elasticsearch.username"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    aws_auth: {service: opensearch}", "output.elasticsearch.aws_auth.service: 'opensearch' is not one of es (Amazon OpenSearch Service), aoss (OpenSearch Serverless)"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    aws_auth: {rolearn: x}", "output.elasticsearch.aws_auth.rolearn: unknown key; did you mean 'output.elasticsearch.aws_auth.role_arn'?"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    compression_level: 10", "output.elasticsearch.compression_level: 10 is out of range (0–9)"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    headers: [a]", "output.elasticsearch.headers: must be a mapping of header names to values"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    headers: {\"X Tenant\": a}", "output.elasticsearch.headers.X Tenant: is not a valid header"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    pipeline: \"\"", "output.elasticsearch.pipeline: must name an ingest pipeline"),
        ("output:\n  splunk:\n    token: t", "output.splunk.url: missing: the HTTP Event Collector's URL"),
        ("output:\n  splunk:\n    url: https://splunk:8088", "output.splunk.token: missing: the HEC token"),
        ("output:\n  splunk:\n    url: splunk:8088\n    token: t", "output.splunk.url: 'splunk:8088' is not an http(s) URL"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    ack_timout: 30s", "output.splunk.ack_timout: unknown key; did you mean 'output.splunk.ack_timeout'?"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    bulk_max_size: 0", "output.splunk.bulk_max_size: 0 is out of range (1–100000)"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    bulk_max_bytes: 10", "output.splunk.bulk_max_bytes: 10 bytes is out of range (1024–838860800)"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    use_ack: sometimes", "output.splunk.use_ack: must be true or false"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    ack_timeout: forever", "output.splunk.ack_timeout: 'forever' is not a duration"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    channel: chan-1", "output.splunk.channel: 'chan-1' is not a GUID"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    ssl: {verify: none}", "output.splunk.ssl.verify: unknown key; known keys here: certificate, certificate_authorities, enabled, key, verification_mode"),
        ("output:\n  splunk:\n    url: https://s:8088\n    token: t\n    codec: splunk", "output.splunk.codec: 'splunk' is not a codec"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    ilm: {}", "output.elasticsearch.ilm: the policy is attached through the index template: set output.elasticsearch.template.enabled: true"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    template.enabled: true\n    aws_auth: {region: eu-west-1}\n    ilm: {}", "output.elasticsearch.ilm: Amazon OpenSearch Service and Serverless have no ILM"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    template.enabled: true\n    ilm: {delete_after: soon}", "output.elasticsearch.ilm.delete_after: 'soon' is not a duration"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    template.enabled: true\n    ilm: {rollover_max_primary_shard_size: 1k}", "output.elasticsearch.ilm.rollover_max_primary_shard_size: 1024 bytes is less than 1MiB"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    template.enabled: true\n    ilm: {policy_file: /nonexistent/ilm.json}", "output.elasticsearch.ilm.policy_file: cannot read '/nonexistent/ilm.json'"),
        ("output:\n  elasticsearch:\n    hosts: [h]\n    template.enabled: true\n    ilm: {overwrites: true}", "output.elasticsearch.ilm.overwrites: unknown key; did you mean 'output.elasticsearch.ilm.overwrite'?"),
        ("output:\n  redis:\n    hosts: [r]\n    filter:\n      drop_fields: [tlsDetail]", "output.redis.filter.drop_fields: 'tlsDetail' is not a CloudTrail record field; did you mean 'tlsDetails'?"),
    ])
    func errorsNameTheFileAndTheKey(yaml: String, message: String) {
        let e = error(yaml)
        #expect(e.hasPrefix("/etc/cloudtrailbeat.yml: "), "\(e)")
        #expect(e.contains(message), "\(e)")
    }

    /// Amazon OpenSearch Service and Elastic's AWS integration: SigV4, a data stream, a pipeline, gzip,
    /// headers, a path prefix; the region and service from the host name when not set.
    @Test func elasticsearchDestinations() throws {
        let c = try Config.parse("""
            output.elasticsearch:
              hosts: ["https://search-trail-abc123.eu-west-1.es.amazonaws.com"]
              data_stream: {namespace: prod}
              pipeline: logs-aws.cloudtrail-2.17.0
              path: /es/
              compression_level: 6
              headers: {X-Tenant: security, X-Retries: 3}
              aws_auth: {role_arn: "arn:aws:iam::123456789012:role/shipper"}
              codec: elastic_integration
            """, file: "c.yml")
        let e = try #require(c.elasticsearch)
        #expect(e.dataStream == Config.DataStreamSection(type: "logs", dataset: "aws.cloudtrail", namespace: "prod"))
        #expect(e.pipeline == "logs-aws.cloudtrail-2.17.0" && e.path == "/es/" && e.compressionLevel == 6)
        #expect(e.headers == ["X-Tenant": "security", "X-Retries": "3"])
        #expect(e.awsAuth == Config.AWSAuthSection(region: nil, service: nil, roleARN: "arn:aws:iam::123456789012:role/shipper", externalID: nil))
        #expect(c.codec(forOutput: "elasticsearch").kind == .elasticIntegration)
        let signer = try Bootstrap.openSearchSigner(c, e.awsAuth!, hosts: e.hosts, environment: [:])
        #expect(signer.region == "eu-west-1" && signer.service == "es")
        func named(_ url: String) -> String? { Bootstrap.awsHost(url).map { "\($0.region) \($0.service)" } }
        #expect(named("https://abc123.us-east-2.aoss.amazonaws.com") == "us-east-2 aoss")
        #expect(named("vpc-logs-x.cn-north-1.es.amazonaws.com.cn:443") == "cn-north-1 es")
        #expect(named("https://es.internal:9200") == nil && named("https://s3.amazonaws.com") == nil)
        let disabled = try Config.parse("output.elasticsearch: {hosts: [h], aws_auth: {enabled: false}, username: u}", file: "c.yml")
        #expect(disabled.elasticsearch?.awsAuth == nil && disabled.elasticsearch?.username == "u")
        // Neither the settings, the host, the input nor the environment say a region: an error naming the key.
        let nowhere = try Config.parse("output.elasticsearch: {hosts: [\"https://es.internal\"], aws_auth: {}}", file: "c.yml")
        let noRegion = #expect(throws: ConfigError.self) {
            try Bootstrap.openSearchSigner(nowhere, nowhere.elasticsearch!.awsAuth!, hosts: ["https://es.internal"], environment: ["HOME": "/nonexistent"])
        }
        #expect(noRegion?.description.contains("output.elasticsearch.aws_auth.region: no region") == true, "\(String(describing: noRegion))")
        let fromEnvironment = try Bootstrap.openSearchSigner(nowhere, nowhere.elasticsearch!.awsAuth!, hosts: ["https://es.internal"], environment: ["AWS_REGION": "ap-south-1"])
        #expect(fromEnvironment.region == "ap-south-1" && fromEnvironment.service == "es")
    }

    /// Splunk HEC, read through its table: the defaults are the output's own, the keys land in the
    /// output's configuration, and the codec defaults to the raw record (sourcetype aws:cloudtrail).
    @Test func splunkSettings() throws {
        let defaults = try #require(try Config.parse("output.splunk: {url: \"https://splunk.example.com:8088\", token: \"${HEC_TOKEN:abc}\"}", file: "c.yml").splunk)
        #expect(defaults.output.url == "https://splunk.example.com:8088" && defaults.output.token == "abc" && defaults.worker == 4)
        #expect(defaults.output.useAck && defaults.output.ackTimeout == 300 && defaults.output.sourcetype == "aws:cloudtrail" && defaults.output.index == nil)
        let ca = try TestCA()  // read when the output is made
        let c = try Config.parse("""
            output.splunk:
              url: https://splunk.example.com:8088/services/collector/event
              token: 0b7c4e5a
              index: aws
              sourcetype: ""
              source: cloudtrail
              host: shipper-1
              bulk_max_size: 200
              bulk_max_bytes: 512KiB
              worker: 8
              compression_level: 5
              use_ack: false
              ack_timeout: 2m
              ack_poll_interval: 250ms
              channel: 3F2504E0-4F89-11D3-9A0C-0305E82C3301
              timeout: 15s
              ssl: {certificate_authorities: [\(ca.certificate)], verification_mode: none}
              codec: ecs
            """, file: "c.yml")
        let s = try #require(c.splunk)
        let o = s.output
        #expect(o.index == "aws" && o.sourcetype == nil && o.source == "cloudtrail" && o.host == "shipper-1")
        #expect(o.bulkMaxSize == 200 && o.bulkMaxBytes == 512 << 10 && s.worker == 8 && o.compressionLevel == 5)
        #expect(!o.useAck && o.ackTimeout == 120 && o.ackPollInterval == 0.25 && o.channel == "3F2504E0-4F89-11D3-9A0C-0305E82C3301" && o.timeout == 15)
        #expect(o.tls == TLSSettings(certificateAuthorities: [ca.certificate], verify: false))
        #expect(c.codec(forOutput: "splunk").kind == .ecs && c.outputNames == ["splunk"] && c.workers(forOutput: "splunk") == 8)
        #expect(try Config.parse("output.splunk: {url: \"http://s:8088\", token: t}", file: "c.yml").codec(forOutput: "splunk").kind == .raw)
        #expect(try Config.parse("output.splunk: {enabled: false, url: \"http://s:8088\"}\noutput.console: {}", file: "c.yml").splunk == nil)
        // The table is the list of keys: every key it names is known, and nothing else.
        #expect(Config.known["output.splunk"] == Config.splunkSchema.keys && Config.known["output.splunk.ssl"] != nil)
        let output = try #require(try Bootstrap.outputs(c).first as? SplunkHECOutput)
        #expect(output.endpoint == "https://splunk.example.com:8088/services/collector/event" && output.ackEndpoint == "https://splunk.example.com:8088/services/collector/ack")
        #expect(output.channel == "3F2504E0-4F89-11D3-9A0C-0305E82C3301")
    }

    /// `test config --keys`: every key of every table, with its default (the settings' own initial
    /// values, which parsing starts from) and what it takes.
    @Test func theKeyReferenceListsEveryKeyWithItsDefault() throws {
        let r = try run(["test", "config", "--keys"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines == Config.keyReference)
        for line in [
            "input.workers: 4 — a whole number, 1–64", "input.visibility_timeout: 300s — a whole number of seconds, 2–43200",
            "journal.max_size: 4GiB — a size, at least 16MiB", "output.elasticsearch.bulk_max_bytes: 10MiB — a size",
            "output.splunk.ack_timeout: 300s — a duration, 1s–86400s", "output.splunk.url: (required) — a string",
            "output.redis.datatype: list — one of list, channel", "logging.level: info — one of debug, info, warning, error",
            "output.elasticsearch.ilm.rollover_max_primary_shard_size: 50gb — a size, at least 1MiB", "http.port: 5066 — a whole number, 0–65535",
        ] {
            #expect(lines.contains(line), "missing: \(line)")
        }
        // Every key the parser knows is in the reference (nested mappings like ssl are described at their key).
        let listed = Set(lines.map { String($0.prefix { $0 != ":" && $0 != " " }) })
        for (section, keys) in Config.known where listed.contains(where: { $0.hasPrefix(section.isEmpty ? "" : section + ".") }) || section.isEmpty {
            for key in keys where !listed.contains(section.isEmpty ? key : section + "." + key) && !["ssl", "template", "data_stream", "aws_auth", "path", "http", "filter"].contains(where: { section.hasSuffix($0) }) {
                Issue.record("\(section).\(key) is not in the key reference")
            }
        }
    }

    /// `--enqueue` sends keys straight to the queue; consumers with `input.topics` would quarantine them
    /// all ("did not come through SNS"), so the run refuses to start, before any AWS call.
    @Test func enqueueIsRefusedWhereOnlySNSTopicsAreAccepted() throws {
        let dir = TempDir("enqueue-topics")
        let file = dir.sub("c.yml")
        try """
            input:
              sqs_url: https://sqs.us-east-1.amazonaws.com/123456789012/cloudtrail
              aws_region: us-east-1
              topics: ["arn:aws:sns:us-east-1:123456789012:cloudtrail"]
            journal.path: \(dir.sub("journal"))
            output.console: {}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try run(["-c", file, "-b", "org-trail-bucket", "--enqueue"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("\(file): input.topics: --enqueue sends notifications straight to input.sqs_url, not through SNS"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.sub("journal")), "refused before anything was opened")
    }

    /// `output.elasticsearch.ilm`: Elasticsearch's units from ours, the policy file as it is.
    @Test func ilmSettings() throws {
        let dir = TempDir("ilm")
        let file = dir.sub("policy.json")
        try #"{"policy": {"phases": {"hot": {"actions": {}}}}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let c = try Config.parse("""
            output.elasticsearch:
              hosts: [h]
              template.enabled: true
              data_stream: {}
              ilm: {policy_name: trail-retention, rollover_max_age: 36h, rollover_max_primary_shard_size: 512MiB, delete_after: 400d, overwrite: true}
            """, file: "c.yml")
        let ilm = try #require(c.elasticsearch?.ilm)
        #expect(ilm.policyName == "trail-retention" && ilm.rolloverMaxAge == "36h" && ilm.rolloverMaxPrimaryShardSize == "512mb" && ilm.deleteAfter == "400d" && ilm.overwrite)
        let defaults = try #require(try Config.parse("output.elasticsearch: {hosts: [h], template.enabled: true, ilm: {}}", file: "c.yml").elasticsearch?.ilm)
        #expect(defaults == ElasticsearchOutput.ILM())
        let fromFile = try Config.parse("output.elasticsearch: {hosts: [h], template.enabled: true, ilm: {policy_file: \"\(file)\"}}", file: "c.yml")
        #expect(fromFile.elasticsearch?.ilm?.policy.map { String(decoding: $0, as: UTF8.self) }?.contains("\"hot\"") == true)
        #expect(try Config.parse("output.elasticsearch: {hosts: [h], ilm: {enabled: false}}", file: "c.yml").elasticsearch?.ilm == nil)
        let output = try #require(try Bootstrap.outputs(c).first as? ElasticsearchOutput)
        #expect(output.configuration.ilm == ilm)
    }

    /// `codec` and `filter` per output, the top-level filter as everyone's default, `filter: {}` to opt out.
    /// Inputs the `config` fuzz target (Fuzz/) found, and the shapes behind them: each is a clear
    /// error naming the file, never a crash or a memory blow-up.
    @Test func yamlThatBreaksTheYAMLLibraryIsAnErrorNotACrash() throws {
        let regression = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/Regressions/config/yams-collection-key.yml")
        let found = try String(contentsOf: regression, encoding: .utf8)
        #expect(error(found).contains("/etc/cloudtrailbeat.yml: not valid YAML: a mapping key that is not a plain value"), "\(error(found))")
        #expect(error("input:\n  ? [a, b]\n  : 1\n").contains("a mapping key that is not a plain value"))
        // Ten levels of ten aliases each: 10^10 values from a few hundred bytes.
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...10 { bomb += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        #expect(error(bomb).contains("more than 100000 values"), "\(error(bomb))")
        #expect(error(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).contains("nested deeper than 64 levels"))
        // Thousands deep overflowed Yams' recursive composer: now composed on a big stack, then refused.
        let deep = String(decoding: try Data(contentsOf: regression.deletingLastPathComponent().appendingPathComponent("yams-deep-flow-nesting.yml")), as: UTF8.self)
        #expect(deep.count > 6000 && error(deep).hasPrefix("/etc/cloudtrailbeat.yml: not valid YAML: "), "\(error(deep).prefix(300))")
        #expect(error(String(repeating: "[", count: 9000) + String(repeating: "]", count: 9000)).contains("nested deeper than 64 levels"))
        #expect(error(String(repeating: "[", count: 10_001)).contains("more than 10000 brackets"))
        #expect(error(String(repeating: "- ", count: 65) + "x").contains("line 1 starts its content beyond column 128"))
        #expect(error("a:\n" + String(repeating: " ", count: 200) + "b: 1").contains("line 2 starts its content beyond column 128"))
        #expect(error(String(repeating: "- ", count: 65)).contains("line 1 starts its content beyond column 128"), "indicators alone, no newline")
        #expect(!error("input:\n" + String(repeating: " ", count: 200) + "\noutput.console: {}").contains("beyond column"), "a blank line is no nesting")
        #expect(error("input: {sqs_url: &u 'https://sqs.us-east-1.amazonaws.com/1/q', aws_region: us-east-1}\noutput.console: {}") == "no error", "ordinary YAML still loads")
    }

    @Test func codecsAndFiltersPerOutput() throws {
        let c = try Config.parse("""
            filter:
              exclude:
                - readOnly: true
                  eventName: ["!GetSecretValue", "!Decrypt"]
                - {eventSource: kms.amazonaws.com, eventName: Decrypt, userIdentity.type: AWSService}
              drop_fields: [responseElements]
            output:
              file:
                path: /tmp/o
                codec: ecs
              elasticsearch:
                hosts: ["http://es:9200"]
                codec.ecs.event_original: true
                filter:
                  include:
                    - eventSource: ["iam.amazonaws.com", "sts.*"]
              redis:
                hosts: [r]
                codec: ocsf
                filter: {}
              console: {}
            """, file: "c.yml")
        #expect(c.codec(forOutput: "file") == CodecOptions(kind: .ecs))
        #expect(c.codec(forOutput: "elasticsearch") == CodecOptions(kind: .ecs, eventOriginal: true))
        #expect(c.codec(forOutput: "redis").kind == .ocsf && c.codec(forOutput: "console").kind == .cloudtrail)
        let everyone = RecordFilter(
            exclude: [["readOnly": ["true"], "eventName": ["!GetSecretValue", "!Decrypt"]],
                      ["eventSource": ["kms.amazonaws.com"], "eventName": ["Decrypt"], "userIdentity.type": ["AWSService"]]],
            dropFields: ["responseElements"])
        #expect(c.filter(forOutput: "file") == everyone && c.filter(forOutput: "console") == everyone)
        #expect(c.filter(forOutput: "elasticsearch") == RecordFilter(include: [["eventSource": ["iam.amazonaws.com", "sts.*"]]]))
        #expect(c.filter(forOutput: "redis") == nil, "filter: {} ships every record")
    }

    @Test func environmentVariablesExpand() throws {
        setenv("CTB_TEST_PASSWORD", "s3cret", 1)
        let c = try Config.parse("output:\n  redis:\n    hosts: [r]\n    password: ${CTB_TEST_PASSWORD}\n    key: ${CTB_UNSET:fallback}", file: "c.yml")
        #expect(c.redis?.password == "s3cret" && c.redis?.key == "fallback")
    }

    /// The region: configuration, then AWS_REGION, then the queue URL's host, then instance metadata
    /// (IMDSv2); with none of them the error names input.aws_region.
    @Test func regionComesFromConfigEnvironmentQueueURLOrInstanceMetadata() async throws {
        let http = HTTPClient()
        func config(_ region: String?, _ queue: String?) throws -> Config {
            var text = "input:\n"
            if let region { text += "  aws_region: \(region)\n" }
            if let queue { text += "  sqs_url: \(queue)\n" }
            return try Config.parse(text + "output:\n  console: {}\n", file: "c.yml")
        }
        let empty = ["HOME": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"]
        let queue = "https://sqs.eu-west-2.amazonaws.com/123456789012/trail"
        #expect(try await Bootstrap.region(try config("us-west-1", queue), http: http, environment: empty.merging(["AWS_REGION": "ap-south-1"]) { $1 }) == "us-west-1")
        #expect(try await Bootstrap.region(try config(nil, queue), http: http, environment: empty.merging(["AWS_REGION": "ap-south-1"]) { $1 }) == "ap-south-1")
        #expect(try await Bootstrap.region(try config(nil, queue), http: http, environment: empty) == "eu-west-2")
        let port = freePort()
        let imds = try LocalServer(
            ["python3", Stack.repo.appendingPathComponent("Tests/AWSTests/Fixtures/imds_server.py").path, String(port), "/nonexistent"],
            port: port, name: "imds", installHint: "python3 is needed")
        defer { imds.stop() }
        let local = "http://127.0.0.1:9324/queue/trail"  // a queue URL that names no region
        #expect(try await Bootstrap.region(try config(nil, local), http: http, environment: empty.merging(["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url]) { $1 }) == "eu-north-1")
        // AWS_EC2_METADATA_DISABLED=true: the metadata service that answers above is not asked.
        let disabled = empty.merging(["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url, "AWS_EC2_METADATA_DISABLED": "true"]) { $1 }
        await #expect { _ = try await Bootstrap.region(try config(nil, local), http: http, environment: disabled) } throws: {
            "\($0)".contains("input.aws_region") && "\($0)".contains("AWS_EC2_METADATA_DISABLED")
        }
        let nowhere = empty.merging(["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:\(freePort())"]) { $1 }
        await #expect { _ = try await Bootstrap.region(try config(nil, local), http: http, environment: nowhere) } throws: {
            "\($0)".contains("input.aws_region") && "\($0)".contains("no region")
        }
    }
}
