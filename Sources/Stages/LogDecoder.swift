import Crypto
import CZlib

/// A CloudTrail log body, from compressed bytes to records: gunzip (when gzip) → strict splitter.
///
/// Errors are ``GunzipError`` (compressed offsets) or ``SplitError`` (uncompressed offsets).
///
/// Bounds, whatever the input: memory is one zlib window and output chunk plus the splitter's buffer
/// (at most `maxRecordSize` and a chunk); work is at most `maxObjectSize` uncompressed bytes — a body
/// that inflates past it (a zip bomb) is refused with `objectTooLarge` as soon as it does.
public final class LogDecoder {
    private let gunzip = Gunzip()
    private var splitter: RecordSplitter
    /// The most uncompressed bytes the body may hold, and how many it held so far.
    private let maxObjectSize: UInt64
    private var inflated: UInt64 = 0

    /// The SHA-256 of the uncompressed bytes, when asked for (integrity validation).
    private var hasher: SHA256?

    /// - Parameters:
    ///   - maxRecordSize: the largest record (or other token buffered whole) accepted.
    ///   - maxObjectSize: the most bytes the body may hold uncompressed (`input.max_object_size`);
    ///     unbounded by default.
    ///   - hashing: also hash the uncompressed bytes as they pass (``contentSHA256``).
    public init(maxRecordSize: Int = 16 << 20, maxObjectSize: UInt64 = .max, hashing: Bool = false) {
        splitter = RecordSplitter(maxRecordSize: maxRecordSize)
        self.maxObjectSize = maxObjectSize
        hasher = hashing ? SHA256() : nil
    }

    /// Counts uncompressed bytes before they go further; throws once they pass `maxObjectSize`.
    @inline(__always) private func admit(_ bytes: UnsafeRawBufferPointer) throws {
        inflated += UInt64(bytes.count)
        guard inflated > maxObjectSize else { return }
        throw SplitError(
            code: .objectTooLarge, offset: maxObjectSize, recordIndex: nil,
            message: "the object is larger than \(maxObjectSize) bytes uncompressed (input.max_object_size): a zip bomb, or no CloudTrail log; stopped")
    }

    /// After ``finish(_:)``, with `hashing`: the SHA-256 of every uncompressed byte (what CloudTrail's
    /// digests list for the file).
    public private(set) var contentSHA256: [UInt8]?

    /// Records completed so far.
    public var recordCount: UInt64 { splitter.recordCount }

    /// Feeds body bytes as downloaded; calls `onRecord` for each record they complete.
    public func push(_ bytes: UnsafeRawBufferPointer, _ onRecord: (RecordView) throws -> Void) throws {
        if hasher == nil {
            try gunzip.push(bytes) {
                try admit($0)
                try splitter.push($0, onRecord)
            }
        } else {
            try gunzip.push(bytes) {
                try admit($0)
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
            try admit($0)
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
