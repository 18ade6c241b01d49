import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// NDJSON files under `path` with base `filename`, rotated by size (`rotate_every_kb`) keeping at most
/// `number_of_files` (the current one and `filename.1` … `filename.N-1`). Data is fsynced before a batch
/// is acknowledged; files are created 0600.
public final class FileOutput: Output, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var path: String
        public var filename: String = "cloudtrailbeat.ndjson"
        public var rotateEveryKB: Int = 10 * 1024
        public var numberOfFiles: Int = 7
        public var maxBatch: Int = 2048
        public init(path: String) { self.path = path }
    }

    public let name = "file"
    public let configuration: Configuration
    public var maxBatch: Int { configuration.maxBatch }
    private let lane = BlockingLane("cloudtrailbeat.output.file")
    private var fd: Int32 = -1
    private var size = 0

    public init(_ configuration: Configuration) throws {
        self.configuration = configuration
        guard configuration.numberOfFiles >= 1, configuration.rotateEveryKB >= 1 else {
            throw OutputError(output: "file", code: .configuration, message: "number_of_files and rotate_every_kb must be at least 1")
        }
        do {
            try FileManager.default.createDirectory(atPath: configuration.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw OutputError(output: "file", code: .configuration, message: "cannot create directory '\(configuration.path)': \(error.localizedDescription)")
        }
    }

    var current: String { configuration.path + "/" + configuration.filename }

    private func openCurrent() throws {
        guard fd < 0 else { return }
        // Read-write, not write-only: the torn-tail check below reads the end of the file back.
        fd = open(current, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw OutputError(output: name, message: "cannot open '\(current)': \(String(cString: strerror(errno)))") }
        do {
            size = try cutTornTail(fd, path: current, output: name)
        } catch {
            Glibc.close(fd)
            fd = -1
            throw error
        }
    }

    private func rotate() throws {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
        let n = configuration.numberOfFiles
        func move(_ from: String, _ to: String) throws {
            guard rename(from, to) == 0 || errno == ENOENT else {
                throw OutputError(output: name, message: "cannot rotate '\(from)' to '\(to)': \(String(cString: strerror(errno)))")
            }
        }
        func remove(_ path: String) throws {
            guard unlink(path) == 0 || errno == ENOENT else {
                throw OutputError(output: name, message: "cannot remove the oldest file '\(path)': \(String(cString: strerror(errno)))")
            }
        }
        if n == 1 {
            try remove(current)
        } else {
            try remove("\(current).\(n - 1)")
            if n > 2 {
                for i in stride(from: n - 2, through: 1, by: -1) { try move("\(current).\(i)", "\(current).\(i + 1)") }
            }
            try move(current, "\(current).1")
        }
        // Make the renames durable before writing on.
        let dir = open(configuration.path, O_RDONLY | O_DIRECTORY)
        if dir >= 0 {
            fsync(dir)
            Glibc.close(dir)
        }
        try openCurrent()
    }

    public func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        try await lane.run { [self] in
            try openCurrent()
            do {
                try write(batch)
            } catch {
                // A failed write (a full disk, an I/O error) must not leave part of this batch for the retry
                // to append after: cut the current file back to its last durable line end, or, failing
                // that, close it so that reopening cuts the torn tail.
                if fd >= 0 && (ftruncate(fd, off_t(size)) != 0 || fsync(fd) != 0) {
                    Glibc.close(fd)
                    fd = -1
                }
                throw error
            }
            return DeliveryReport(handled: batch.count)
        }
    }

    /// Appends `batch`, rotating where a line would cross `rotate_every_kb`. `size` only ever counts
    /// bytes that are written and fsynced, so it is always a line end the file can be cut back to.
    private func write(_ batch: [OutputEvent]) throws {
        let limit = configuration.rotateEveryKB * 1024
        var buffer: [UInt8] = []
        buffer.reserveCapacity(min(limit, batch.reduce(0) { $0 + $1.json.count + 1 }))
        for event in batch {
            let line = event.json.count + 1
            if size + buffer.count > 0 && size + buffer.count + line > limit {
                try flush(&buffer)
                try rotate()
            }
            buffer += event.json
            buffer.append(0x0a)
        }
        try flush(&buffer)
    }

    private func flush(_ buffer: inout [UInt8]) throws {
        try writeAll(fd, buffer, output: name, path: current)
        guard fsync(fd) == 0 else { throw OutputError(output: name, message: "fsync of '\(current)' failed: \(String(cString: strerror(errno)))") }
        size += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    public func close() async {
        _ = try? await lane.run { [self] in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }
}

/// NDJSON on standard output (`pretty`: indented JSON); acknowledged once written.
public final class ConsoleOutput: Output, @unchecked Sendable {
    public let name = "console"
    public let pretty: Bool
    public let maxBatch: Int
    private let lane = BlockingLane("cloudtrailbeat.output.console")
    private let fd: Int32

    public init(pretty: Bool = false, maxBatch: Int = 512, fileDescriptor: Int32 = 1) {
        self.pretty = pretty
        self.maxBatch = maxBatch
        self.fd = fileDescriptor
    }

    public func deliver(_ batch: [OutputEvent]) async throws -> DeliveryReport {
        try await lane.run { [self] in
            var buffer: [UInt8] = []
            for event in batch {
                if pretty, let object = try? JSONSerialization.jsonObject(with: Data(event.json)),
                    let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                {
                    buffer += Array(data)
                } else {
                    buffer += event.json
                }
                buffer.append(0x0a)
            }
            try writeAll(fd, buffer, output: name, path: "standard output")
            return DeliveryReport(handled: batch.count)
        }
    }

    public func close() async {}
}
