import Crypto
import CZlib

/// A CloudTrail log body, from compressed bytes to records: gunzip (when gzip) → strict splitter.
///
/// Errors are ``GunzipError`` (compressed offsets) or ``SplitError`` (uncompressed offsets).
public final class LogDecoder {
    private let gunzip = Gunzip()
    private var splitter: RecordSplitter

    /// The SHA-256 of the uncompressed bytes, when asked for (integrity validation).
    private var hasher: SHA256?

    /// - Parameter hashing: also hash the uncompressed bytes as they pass (``contentSHA256``).
    public init(maxRecordSize: Int = 16 << 20, hashing: Bool = false) {
        splitter = RecordSplitter(maxRecordSize: maxRecordSize)
        hasher = hashing ? SHA256() : nil
    }

    /// After ``finish(_:)``, with `hashing`: the SHA-256 of every uncompressed byte (what CloudTrail's
    /// digests list for the file).
    public private(set) var contentSHA256: [UInt8]?

    /// Records completed so far.
    public var recordCount: UInt64 { splitter.recordCount }

    /// Feeds body bytes as downloaded; calls `onRecord` for each record they complete.
    public func push(_ bytes: UnsafeRawBufferPointer, _ onRecord: (RecordView) throws -> Void) throws {
        if hasher == nil {
            try gunzip.push(bytes) { try splitter.push($0, onRecord) }
        } else {
            try gunzip.push(bytes) {
                hasher!.update(bufferPointer: $0)
                try splitter.push($0, onRecord)
            }
        }
    }

    public func push(_ bytes: [UInt8], _ onRecord: (RecordView) throws -> Void) throws {
        try bytes.withUnsafeBytes { try push($0, onRecord) }
    }

    /// Ends the body; returns the number of records.
    @discardableResult
    public func finish(_ onRecord: (RecordView) throws -> Void = { _ in }) throws -> UInt64 {
        try gunzip.finish {
            hasher?.update(bufferPointer: $0)
            try splitter.push($0, onRecord)
        }
        if let h = hasher { contentSHA256 = Array(h.finalize()) }
        return try splitter.finish(onRecord)
    }
}

/// Streaming gzip compression (one member per writer), for corpora, tests and compressed outputs.
public final class GzipWriter {
    private var stream = z_stream()
    private var output = [UInt8](repeating: 0, count: 64 << 10)

    public init(level: Int32 = 6) {
        let rc = cloudtrailbeat_deflateInit2(&stream, level, 16 + 15)
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
    }

    deinit { deflateEnd(&stream) }

    public func write(_ bytes: UnsafeRawBufferPointer, _ sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try run(bytes, flush: Z_NO_FLUSH, sink)
    }

    public func finish(_ sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), flush: Z_FINISH, sink)
    }

    private func run(_ bytes: UnsafeRawBufferPointer, flush: Int32, _ sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        stream.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        stream.avail_in = UInt32(bytes.count)
        try output.withUnsafeMutableBufferPointer { out in
            repeat {
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                _ = deflate(&stream, flush)
                let produced = out.count - Int(stream.avail_out)
                if produced > 0 { try sink(UnsafeRawBufferPointer(start: out.baseAddress, count: produced)) }
            } while stream.avail_out == 0 || stream.avail_in > 0
        }
    }

    /// Compresses `bytes` into one gzip member.
    public static func compress(_ bytes: [UInt8], level: Int32 = 6) -> [UInt8] {
        let w = GzipWriter(level: level)
        var out: [UInt8] = []
        bytes.withUnsafeBytes { b in w.write(b) { out += $0 } }
        w.finish { out += $0 }
        return out
    }
}
