import Foundation
import Integrity
import Journal
import Logging
import Outputs
import Prometheus

#if canImport(Glibc)
import Glibc
#endif

/// Prometheus metrics of a running engine: counters of what it did, and gauges sampled from the journal
/// at each scrape (so they always match `journal status`).
final class EngineMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let lock = NSLock()
    private var reported: [String: Double] = [:]

    /// Renders the text exposition, first bringing counters and gauges up to date.
    func render(engine: Engine) -> String {
        lock.withLock {
            let c = engine.counters
            count("cloudtrailbeat_sqs_messages_received_total", [], c.messagesReceived)
            count("cloudtrailbeat_sqs_messages_deleted_total", [], c.messagesDeleted)
            count("cloudtrailbeat_sqs_messages_returned_total", [], c.messagesReturned)
            count("cloudtrailbeat_sqs_messages_quarantined_total", [], c.messagesQuarantined)
            count("cloudtrailbeat_sqs_visibility_extensions_total", [], c.visibilityExtensions)
            count("cloudtrailbeat_s3_objects_fetched_total", [], c.objectsFetched)
            count("cloudtrailbeat_s3_objects_quarantined_total", [], c.objectsQuarantined)
            count("cloudtrailbeat_s3_objects_skipped_total", [], c.objectsSkipped)
            count("cloudtrailbeat_s3_bytes_downloaded_total", [], c.bytesDownloaded)
            for setting in ["signature", "topic", "bucket", "account"] {
                count("cloudtrailbeat_refused_total", [("setting", setting)], c.refused[setting] ?? 0)
            }
            for pump in engine.pumps {
                let name = pump.output.name
                count("cloudtrailbeat_output_records_acknowledged_total", [("output", name)], c.recordsAcknowledged[name] ?? 0)
                count("cloudtrailbeat_records_filtered_total", [("output", name)], c.recordsFiltered[name] ?? 0)
                count("cloudtrailbeat_output_retries_total", [("output", name)], pump.retries)
                count("cloudtrailbeat_output_dead_letters_total", [("output", name)], pump.deadLettered)
                gauge("cloudtrailbeat_output_failing", [("output", name)], pump.isFailing ? 1 : 0)
                if let hec = pump.output as? SplunkHECOutput { gauge("cloudtrailbeat_output_acks_pending", [("output", name)], hec.outstandingAcks) }
            }
            let (inFlight, batches) = engine.pipelineGauges
            gauge("cloudtrailbeat_fetches_in_flight", [], inFlight)
            gauge("cloudtrailbeat_fetch_concurrency", [], engine.config.input.fetchConcurrency)
            count("cloudtrailbeat_journal_commits_total", [], Int(engine.journal.changes.commits))
            let decoded = engine.decodedBodies.usage
            gauge("cloudtrailbeat_decoded_bodies_bytes", [], decoded.bytes)
            count("cloudtrailbeat_object_readings_total", [("from", "memory")], decoded.hits)
            count("cloudtrailbeat_object_readings_total", [("from", "journal")], decoded.misses)
            for (name, b) in batches {
                gauge("cloudtrailbeat_output_last_batch_events", [("output", name)], b.events)
                gauge("cloudtrailbeat_output_last_batch_objects", [("output", name)], b.objects)
            }
            if engine.digestCheck != nil, let integrity = try? engine.journal.integrityStatus() {
                // From the journal's ledger, so they survive restarts and match `journal status`.
                for kind in Finding.Kind.all {
                    count("cloudtrailbeat_integrity_findings_total", [("kind", kind.rawValue)], Int(integrity.counts[kind.rawValue] ?? 0))
                }
                count("cloudtrailbeat_integrity_digests_verified_total", [], Int(integrity.counts["digests_verified"] ?? 0))
                count("cloudtrailbeat_integrity_logs_verified_total", [], Int(integrity.counts["logs_verified"] ?? 0))
                gauge("cloudtrailbeat_integrity_logs_pending", [], integrity.pendingLogs)
            }
            if let status = try? engine.journal.status(listLimit: 0) {
                for stage in ObjectStage.allCases {
                    gauge("cloudtrailbeat_journal_objects", [("stage", stage.description)], status.objectsByStage[stage] ?? 0)
                }
                for state in MessageState.State.allCases {
                    gauge("cloudtrailbeat_journal_messages", [("state", state.description)], status.messagesByState[state] ?? 0)
                }
                for r in status.outputRecords {
                    // From the journal, so they survive restarts: rate(delivered) / rate(deliveries) is the batch size.
                    count("cloudtrailbeat_output_deliveries_total", [("output", r.output)], Int(r.deliveries))
                    count("cloudtrailbeat_output_delivery_objects_total", [("output", r.output)], Int(r.deliveryObjects))
                }
                gauge("cloudtrailbeat_journal_fetches_in_progress", [], status.fetchesInProgress)
                gauge("cloudtrailbeat_journal_used_bytes", [], status.disk.usedBytes)
                gauge("cloudtrailbeat_journal_mapped_bytes", [], status.disk.mappedBytes)
                gauge("cloudtrailbeat_journal_max_bytes", [], status.disk.maxBytes)
                gauge("cloudtrailbeat_journal_limit_bytes", [], status.disk.limitBytes)
                gauge("cloudtrailbeat_journal_filesystem_free_bytes", [], status.disk.filesystemFreeBytes)
                let full = engine.journal.fullState
                gauge("cloudtrailbeat_journal_full", [], full.since == nil ? 0 : 1)
                count("cloudtrailbeat_journal_full_episodes_total", [], full.episodes)
                gauge("cloudtrailbeat_journal_quarantined", [], (try? engine.journal.quarantineCount()) ?? 0)
                count("cloudtrailbeat_journal_quarantine_dropped_total", [], Int(status.quarantineDropped))
                let age = status.oldestUnacknowledged.map { max(0, Date().timeIntervalSince1970 - Double($0) / 1000) } ?? 0
                registry.makeGauge(descriptor: descriptor("cloudtrailbeat_oldest_unacknowledged_age_seconds"), labels: []).set(age)
                var jobs: [String: (listed: UInt64, complete: Int, partitions: Int)] = [:]
                for cursor in status.backfill where !cursor.partition.isEmpty {
                    var j = jobs[cursor.job] ?? (0, 0, 0)
                    j.listed += cursor.listed
                    j.partitions += 1
                    if cursor.complete { j.complete += 1 }
                    jobs[cursor.job] = j
                }
                let pending = (status.objectsByStage[.received] ?? 0) + (status.objectsByStage[.fetched] ?? 0) + (status.objectsByStage[.emitting] ?? 0)
                for (job, j) in jobs {
                    gauge("cloudtrailbeat_backfill_listed_objects", [("job", job)], Int(j.listed))
                    gauge("cloudtrailbeat_backfill_done_objects", [("job", job)], max(0, Int(j.listed) - pending))
                    gauge("cloudtrailbeat_backfill_partitions_complete", [("job", job)], j.complete)
                    gauge("cloudtrailbeat_backfill_partitions", [("job", job)], j.partitions)
                }
            }
            return registry.emitToString()
        }
    }

    private func count(_ name: String, _ labels: [(String, String)], _ value: Int) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let delta = Double(value) - (reported[key] ?? 0)
        let counter = registry.makeCounter(descriptor: descriptor(name), labels: labels)
        if delta > 0 { counter.increment(by: delta) }
        reported[key] = Double(value)
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ value: Int) {
        registry.makeGauge(descriptor: descriptor(name), labels: labels).set(Double(value))
    }

    private func descriptor(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "cloudtrailbeat", metricName: String(name.dropFirst("cloudtrailbeat_".count)), unitName: "",
                             helpText: EngineMetrics.help[name] ?? "")
    }

    /// The `# HELP` line of each metric.
    static let help: [String: String] = [
        "cloudtrailbeat_sqs_messages_received_total": "SQS messages received (each receipt, redeliveries included).",
        "cloudtrailbeat_sqs_messages_deleted_total": "SQS messages deleted after every output acknowledged all their records.",
        "cloudtrailbeat_sqs_messages_returned_total": "SQS messages handed back early (visibility set to a backoff) after a retryable failure.",
        "cloudtrailbeat_sqs_messages_quarantined_total": "SQS messages quarantined (unrecognised, or received too often).",
        "cloudtrailbeat_sqs_visibility_extensions_total": "Visibility timeouts extended for messages still in flight.",
        "cloudtrailbeat_s3_objects_fetched_total": "Log objects downloaded, validated and stored in the journal.",
        "cloudtrailbeat_s3_objects_quarantined_total": "Log objects quarantined (corrupt, malformed, forbidden), with the reason in journal status.",
        "cloudtrailbeat_s3_objects_skipped_total": "Objects skipped as not CloudTrail logs (digests, other files).",
        "cloudtrailbeat_s3_bytes_downloaded_total": "Bytes of log objects downloaded (compressed).",
        "cloudtrailbeat_output_records_acknowledged_total": "Records an output acknowledged (its receiver has them).",
        "cloudtrailbeat_fetches_in_flight": "Downloads this process is running now (at most input.fetch_concurrency).",
        "cloudtrailbeat_fetch_concurrency": "input.fetch_concurrency: the most downloads in flight at once.",
        "cloudtrailbeat_journal_fetches_in_progress": "Downloads the journal records as started and not finished.",
        "cloudtrailbeat_decoded_bodies_bytes": "Records of small objects split at fetch and held in memory for the outputs (at most 16 MiB).",
        "cloudtrailbeat_object_readings_total": "Objects an output read: from the records their fetch split (memory) or by decoding the stored body (journal).",
        "cloudtrailbeat_journal_commits_total": "Journal write transactions committed by this process (several transitions may share one).",
        "cloudtrailbeat_output_last_batch_events": "Events in the output's latest delivery (a batch may span many objects).",
        "cloudtrailbeat_output_last_batch_objects": "Objects the output's latest delivery spanned.",
        "cloudtrailbeat_output_deliveries_total": "Deliveries (batches) the output acknowledged, since the journal was created.",
        "cloudtrailbeat_output_delivery_objects_total": "Objects those deliveries touched, summed (divided by deliveries: objects per batch).",
        "cloudtrailbeat_records_filtered_total": "Records an output's filter dropped: acknowledged for that output without being sent.",
        "cloudtrailbeat_output_retries_total": "Deliveries an output retried after a failure.",
        "cloudtrailbeat_output_dead_letters_total": "Events an output refused permanently, written to the dead-letter file.",
        "cloudtrailbeat_output_acks_pending": "Batches an output sent and waits to hear are indexed (Splunk's indexer acknowledgement); their records are not acknowledged yet.",
        "cloudtrailbeat_output_failing": "1 while an output's deliveries are failing (its events wait in the journal), else 0.",
        "cloudtrailbeat_journal_objects": "Objects in the journal per stage.",
        "cloudtrailbeat_journal_messages": "Messages in the journal per state.",
        "cloudtrailbeat_journal_used_bytes": "Bytes of the journal in use.",
        "cloudtrailbeat_journal_mapped_bytes": "Bytes of the journal's memory map.",
        "cloudtrailbeat_journal_max_bytes": "The journal's configured maximum size (journal.max_size).",
        "cloudtrailbeat_journal_quarantined": "Items in quarantine.",
        "cloudtrailbeat_journal_quarantine_dropped_total": "Quarantine entries dropped, oldest first, to keep the quarantine within journal.quarantine_max_entries.",
        "cloudtrailbeat_refused_total": "Messages (signature, topic) and objects (bucket, account) refused by input.sns_signature, input.topics, input.buckets and input.accounts.",
        "cloudtrailbeat_journal_limit_bytes": "The size the journal may reach now: journal.max_size, or less when its disk holds less.",
        "cloudtrailbeat_journal_filesystem_free_bytes": "Free space on the journal's filesystem.",
        "cloudtrailbeat_journal_full": "1 while journal writes fail for want of space (intake paused until GC or the disk frees some).",
        "cloudtrailbeat_journal_full_episodes_total": "Times the journal ran out of space since start.",
        "cloudtrailbeat_oldest_unacknowledged_age_seconds": "Age of the oldest item some output has not acknowledged yet.",
        "cloudtrailbeat_backfill_listed_objects": "Objects a backfill job has listed.",
        "cloudtrailbeat_backfill_done_objects": "Objects of a backfill job that every output has acknowledged.",
        "cloudtrailbeat_backfill_partitions_complete": "Partitions (account/region) whose listing a backfill job finished.",
        "cloudtrailbeat_backfill_partitions": "Partitions (account/region) a backfill job walks.",
        "cloudtrailbeat_integrity_findings_total": "Integrity findings by kind (digest_invalid, digest_missing, log_modified, log_missing, log_not_covered), each also an event on the outputs.",
        "cloudtrailbeat_integrity_digests_verified_total": "CloudTrail digests whose signature and link verified.",
        "cloudtrailbeat_integrity_logs_verified_total": "Log files a valid digest listed with the hash they have.",
        "cloudtrailbeat_integrity_logs_pending": "Fetched log files whose digest has not come yet (their hashes wait in the journal).",
    ]
}

/// A minimal HTTP/1.1 endpoint for `GET /metrics` (Prometheus text exposition), bound to loopback by
/// default. One thread; one short request per connection.
final class MetricsServer: @unchecked Sendable {
    let fd: Int32
    let port: Int
    private let render: @Sendable () -> String
    private var stopped = false

    init(host: String, port: Int, render: @escaping @Sendable () -> String) throws {
        self.render = render
        let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(sock)
            throw ConfigError(file: "", key: "http.host", message: "'\(host)' is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(sock, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(sock)
            throw ConfigError(file: "", key: "http.port", message: "cannot listen on \(host):\(port): \(reason)")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
        self.fd = sock
        self.port = Int(UInt16(bigEndian: addr.sin_port))
        let thread = Thread { [self] in serve() }
        thread.name = "cloudtrailbeat.metrics"
        thread.start()
    }

    func stop() {
        stopped = true
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func serve() {
        while !stopped {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(client, &buffer, buffer.count, 0)
            let line = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\r\n").first ?? "" : ""
            let parts = line.split(separator: " ")
            let response: String
            if parts.count >= 2, parts[0] == "GET", parts[1] == "/metrics" || parts[1] == "/" {
                let body = render()
                response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            } else {
                response = "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
            }
            let bytes = Array(response.utf8)
            var offset = 0
            while offset < bytes.count {
                let w = bytes.withUnsafeBytes { send(client, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
                if w <= 0 { break }
                offset += w
            }
            close(client)
        }
    }
}
