import CZlib
import Failures

/// Why a compressed body could not be inflated.
public struct GunzipError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The stream is not valid gzip/deflate data.
        public static let corrupt = Code("corrupt-gzip")
        /// The body ended inside a gzip member.
        public static let truncated = Code("truncated-gzip")
        /// zlib could not allocate its state.
        public static let resources = Code("zlib-resources")
        public var description: String { name }
    }

    public var code: Code
    /// Byte offset in the compressed body.
    public var offset: UInt64
    public var message: String
    public var description: String { "\(message) at compressed byte \(offset)" }
}

extension GunzipError: ClassifiedError {
    /// Bad bytes are quarantined; zlib failing to allocate is retried.
    public var disposition: Disposition { code == .resources ? .retry : .quarantine }
}

/// Streaming gunzip: detects gzip by its magic bytes (anything else passes through unchanged),
/// inflates multi-member streams, and reports corrupt or truncated input with the byte offset.
///
/// Memory is one zlib window plus one output buffer, whatever the body's size.
public final class Gunzip {
    private enum Mode { case detect, gzip, passthrough }
    private var mode = Mode.detect
    private var stream = z_stream()
    private var initialised = false
    private var inMember = false
    private var consumed: UInt64 = 0  // compressed bytes consumed before the current push
    private var pendingMagic: [UInt8] = []
    private var output: [UInt8]
    public private(set) var isGzip = false

    /// - Parameter outputChunk: the size of the slices handed to the consumer.
    public init(outputChunk: Int = 128 << 10) {
        // Uninitialised: inflate writes each byte before the consumer sees it, and zeroing 128 KiB per
        // object was a tenth of the CPU of a backfill of small files.
        output = [UInt8](unsafeUninitializedCapacity: outputChunk) { _, count in count = outputChunk }
    }

    deinit {
        if initialised { inflateEnd(&stream) }
    }

    /// Feeds compressed bytes; `sink` receives inflated bytes (valid only during the call).
    public func push(_ input: UnsafeRawBufferPointer, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !input.isEmpty else { return }
        var rest = input[...]
        if mode == .detect {
            let take = min(2 - pendingMagic.count, rest.count)
            pendingMagic += rest.prefix(take)
            rest = rest.dropFirst(take)
            if pendingMagic.count < 2 && pendingMagic[0] == 0x1f { return }  // one more byte decides
            mode = pendingMagic == [0x1f, 0x8b] ? .gzip : .passthrough
            isGzip = mode == .gzip
            let magic = pendingMagic
            pendingMagic = []
            try magic.withUnsafeBytes { try feed($0, sink) }
        }
        try feed(UnsafeRawBufferPointer(rebasing: rest), sink)
    }

    private func feed(_ input: UnsafeRawBufferPointer, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !input.isEmpty else { return }
        switch mode {
        case .detect: return
        case .passthrough:
            try sink(input)
            consumed += UInt64(input.count)
        case .gzip:
            try inflate(input, sink)
        }
    }

    private func inflate(_ input: UnsafeRawBufferPointer, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var offset = 0
        while offset < input.count {
            if !inMember {
                // Between members: only another gzip member (or zero padding) may follow.
                let b = input[offset]
                if b == 0 {
                    offset += 1
                    consumed += 1
                    continue
                }
                if b != 0x1f {
                    throw GunzipError(code: .corrupt, offset: consumed, message: "trailing data after the last gzip member")
                }
                if !initialised {
                    let rc = cloudtrailbeat_inflateInit2(&stream, 16 + 15)
                    guard rc == Z_OK else { throw GunzipError(code: .resources, offset: consumed, message: "inflateInit2 failed (\(rc))") }
                    initialised = true
                } else {
                    inflateReset(&stream)
                }
                inMember = true
            }
            let base = input.baseAddress!.assumingMemoryBound(to: UInt8.self) + offset
            stream.next_in = UnsafeMutablePointer(mutating: base)
            stream.avail_in = UInt32(input.count - offset)
            let before = Int(stream.avail_in)
            var rc: Int32 = Z_OK
            try output.withUnsafeMutableBufferPointer { out in
                repeat {
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    rc = CZlib.inflate(&stream, Z_NO_FLUSH)
                    let produced = out.count - Int(stream.avail_out)
                    if rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR {
                        let used = before - Int(stream.avail_in)
                        let why = stream.msg.map { String(cString: $0) } ?? "inflate error \(rc)"
                        throw GunzipError(code: .corrupt, offset: consumed + UInt64(used), message: "corrupt gzip data: \(why)")
                    }
                    if produced > 0 { try sink(UnsafeRawBufferPointer(start: out.baseAddress, count: produced)) }
                } while rc == Z_OK && (stream.avail_in > 0 || stream.avail_out == 0)
            }
            let used = before - Int(stream.avail_in)
            consumed += UInt64(used)
            offset += used
            if rc == Z_STREAM_END { inMember = false }
        }
    }

    /// Declares the end of the body; throws when it ended inside a gzip member.
    public func finish(_ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        if mode == .detect && !pendingMagic.isEmpty {
            mode = .passthrough
            try pendingMagic.withUnsafeBytes { try feed($0, sink) }
        }
        if mode == .gzip && inMember {
            throw GunzipError(code: .truncated, offset: consumed, message: "the gzip stream ends before its member does")
        }
    }
}
