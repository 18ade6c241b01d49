import Crypto
import Foundation

/// Hex encoding and decoding, and the SHA-256 hex the digests speak.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil when the text is not an even number of hex digits.
    public static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    public static func sha256(_ bytes: some DataProtocol) -> String { encode(SHA256.hash(data: bytes)) }
}

/// Where a trail's files live: what the digest and log keys say of themselves.
///
/// `[prefix/]AWSLogs/[o-org/]account/CloudTrail[-Digest]/region/YYYY/MM/DD/file`.
public struct TrailScope: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Everything before `AWSLogs/` (empty, or ending in `/`).
    public var prefix: String
    public var organization: String?
    public var account: String
    public var region: String

    public static func < (a: TrailScope, b: TrailScope) -> Bool { a.description < b.description }
    public var description: String { "\(prefix)AWSLogs/\(organization.map { $0 + "/" } ?? "")\(account) \(region)" }
}

/// A digest file's key, parsed:
/// `…/CloudTrail-Digest/region/Y/M/D/account_CloudTrail-Digest_region_trail_homeRegion_YYYYMMDDTHHMMSSZ[_backfill].json.gz`.
public struct DigestKey: Sendable, Hashable {
    public var scope: TrailScope
    public var trail: String
    public var homeRegion: String
    /// The digest's end, from the name (`20261203T051200Z`), as a date.
    public var end: Date
    public var backfill: Bool

    public init?(_ key: String) {
        guard let (scope, kind, file) = TrailKeys.split(key), kind == "CloudTrail-Digest" else { return nil }
        var name = Substring(file)
        guard name.hasSuffix(".json.gz") else { return nil }
        name = name.dropLast(".json.gz".count)
        backfill = name.hasSuffix("_backfill")
        if backfill { name = name.dropLast("_backfill".count) }
        let head = "\(scope.account)_CloudTrail-Digest_\(scope.region)_"
        guard name.hasPrefix(head) else { return nil }
        let rest = name.dropFirst(head.count)  // trail_homeRegion_timestamp (trail names may hold '_')
        let parts = rest.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count >= 3, let end = TrailKeys.compactDate(String(parts[parts.count - 1])) else { return nil }
        self.scope = scope
        self.end = end
        homeRegion = String(parts[parts.count - 2])
        trail = parts[0..<(parts.count - 2)].joined(separator: "_")
        guard !trail.isEmpty else { return nil }
    }

    /// Where the logs it lists live: `[prefix/]AWSLogs/[o-…/]account/CloudTrail/region/`.
    public var logsPrefix: String {
        "\(scope.prefix)AWSLogs/\(scope.organization.map { $0 + "/" } ?? "")\(scope.account)/CloudTrail/\(scope.region)/"
    }

    /// Where its chain's digests live: `[prefix/]AWSLogs/[o-…/]account/CloudTrail-Digest/region/`.
    public var digestsPrefix: String {
        "\(scope.prefix)AWSLogs/\(scope.organization.map { $0 + "/" } ?? "")\(scope.account)/CloudTrail-Digest/\(scope.region)/"
    }

    /// The chain a digest belongs to: its scope, trail, home region, and backfill or not.
    public var chain: String { "\(scope) \(trail)\(backfill ? " (backfill)" : "")" }
}

/// A log file's key, parsed: `…/CloudTrail/region/Y/M/D/account_CloudTrail_region_YYYYMMDDTHHMMZ_unique.json.gz`.
public struct LogKey: Sendable, Hashable {
    public var scope: TrailScope
    /// When CloudTrail delivered it, from the name.
    public var delivered: Date

    public init?(_ key: String) {
        guard let (scope, kind, file) = TrailKeys.split(key), kind == "CloudTrail" else { return nil }
        let head = "\(scope.account)_CloudTrail_\(scope.region)_"
        guard file.hasPrefix(head) else { return nil }
        let stamp = file.dropFirst(head.count).prefix { $0 != "_" }
        guard let delivered = TrailKeys.compactDate(String(stamp)) else { return nil }
        self.scope = scope
        self.delivered = delivered
    }
}

public enum TrailKeys {
    /// (scope, `CloudTrail`/`CloudTrail-Digest`/…, file name) of a key in CloudTrail's layout.
    static func split(_ key: String) -> (TrailScope, String, String)? {
        guard let range = key.range(of: "AWSLogs/", options: .backwards) else { return nil }
        let prefix = String(key[..<range.lowerBound])
        guard prefix.isEmpty || prefix.hasSuffix("/") else { return nil }
        var parts = key[range.upperBound...].split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var org: String?
        if parts.first?.hasPrefix("o-") == true { org = parts.removeFirst() }
        // account / kind / region / Y / M / D / file
        guard parts.count == 7, parts[0].count == 12, parts[0].allSatisfy(\.isNumber) else { return nil }
        return (TrailScope(prefix: prefix, organization: org, account: parts[0], region: parts[2]), parts[1], parts[6])
    }

    /// `20261203T0512Z` or `20261203T051200Z`.
    public static func compactDate(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count == 14 || u.count == 16, u[8] == UInt8(ascii: "T"), u.last == UInt8(ascii: "Z") else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r {
                guard (48...57).contains(u[i]) else { return nil }
                v = v * 10 + Int(u[i] - 48)
            }
            return v
        }
        guard let y = num(0..<4), let mo = num(4..<6), let d = num(6..<8), let h = num(9..<11), let mi = num(11..<13) else { return nil }
        let sec = u.count == 16 ? num(13..<15) : 0
        guard let sec else { return nil }
        var c = DateComponents()
        (c.year, c.month, c.day, c.hour, c.minute, c.second) = (y, mo, d, h, mi, sec)
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        return cal.date(from: c)
    }

    /// `2026-12-03T05:12:00Z` (the digests' own timestamps).
    public static func isoDate(_ s: String) -> Date? {
        (try? Date(s, strategy: .iso8601)) ?? (try? Date(s, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }
}
