import CZlib

/// Whole-buffer compression through zlib: the zlib format for Lumberjack's compressed frames, gzip for
/// HTTP request bodies (`Content-Encoding: gzip`).
enum Deflate {
    /// zlib's own format (RFC 1950).
    static func zlib(_ bytes: [UInt8], level: Int32) -> [UInt8] { compress(bytes, level: level, windowBits: 15) }

    /// The gzip format (RFC 1952).
    static func gzip(_ bytes: [UInt8], level: Int32) -> [UInt8] { compress(bytes, level: level, windowBits: 15 + 16) }

    private static func compress(_ bytes: [UInt8], level: Int32, windowBits: Int32) -> [UInt8] {
        var stream = z_stream()
        precondition(cloudtrailbeat_deflateInit2(&stream, level, windowBits) == Z_OK)
        defer { deflateEnd(&stream) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count / 4 + 64)
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        bytes.withUnsafeBytes { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self))
            stream.avail_in = UInt32(input.count)
            buffer.withUnsafeMutableBufferPointer { b in
                repeat {
                    stream.next_out = b.baseAddress
                    stream.avail_out = UInt32(b.count)
                    _ = CZlib.deflate(&stream, Z_FINISH)
                    out += b[..<(b.count - Int(stream.avail_out))]
                } while stream.avail_out == 0
            }
        }
        return out
    }
}
