/// What S3 accepts as a bucket name and an object key: the gate every name a notification carries
/// passes before any policy looks at it or any request is made with it.
///
/// Invariants:
/// 1. A bucket name that passes is 3–63 characters of `a-z 0-9 . -`, starts and ends with a letter or
///    digit, has no `..`, is not an IPv4 address, and has none of S3's reserved prefixes or suffixes. It
///    therefore holds no character a URL gives a meaning to (`@ : / # ? %`), so it cannot change the
///    host, port, user or path of a request built from it; and no `file://` or path is ever one.
/// 2. A key that passes is 1–1 024 UTF-8 bytes with no control character (C0, DEL, C1): it cannot
///    forge a log line or a terminal escape. Dot segments (`../`) are allowed, as S3 allows them: the
///    HTTP layer sends the path as written (no normalisation), so they name a key, never another bucket.
public enum S3Name {
    /// S3's limit on a key, in UTF-8 bytes.
    public static let maxKeyBytes = 1024

    /// Why `name` is not an S3 bucket name (S3's general-purpose bucket naming rules), or nil.
    public static func bucketProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count) else { return "\(bytes.count) characters, not 3 to 63" }
        guard bytes.allSatisfy(isBucketByte) else {
            return "holds characters other than lowercase letters, digits, dots and hyphens"
        }
        guard isAlphanumeric(bytes.first!), isAlphanumeric(bytes.last!) else {
            return "does not start and end with a letter or digit"
        }
        guard !name.contains("..") else { return "has two adjacent dots" }
        if isIPv4(name) { return "is formatted as an IP address" }
        for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] where name.hasPrefix(prefix) {
            return "starts with the reserved prefix '\(prefix)'"
        }
        for suffix in ["-s3alias", "--ol-s3", "--x-s3", ".mrap"] where name.hasSuffix(suffix) {
            return "ends with the reserved suffix '\(suffix)'"
        }
        return nil
    }

    /// Why `key` is not an object key this shipper reads (empty, longer than S3 allows, or holding a
    /// control character), or nil.
    public static func keyProblem(_ key: String) -> String? {
        let count = key.utf8.count
        guard count > 0 else { return "is empty" }
        guard count <= maxKeyBytes else { return "is \(count) bytes, more than S3's \(maxKeyBytes)" }
        if let c = key.unicodeScalars.first(where: UntrustedText.isControl) {
            return "holds the control character U+\(String(c.value, radix: 16, uppercase: true).leftPadded(to: 4))"
        }
        return nil
    }

    /// Why `pattern` (an `input.buckets` entry) can match no valid bucket name, or nil: only bucket
    /// characters and the glob characters `* ? [ ] !` are accepted, so that `*` never spans a
    /// character a bucket cannot hold.
    public static func patternProblem(_ pattern: String) -> String? {
        guard !pattern.isEmpty else { return "is empty" }
        let glob = Set("*?[]!".utf8)
        guard pattern.utf8.allSatisfy({ isBucketByte($0) || glob.contains($0) }) else {
            return "holds characters no bucket name can (a bucket is lowercase letters, digits, dots and hyphens; globs add * ? [ ] !)"
        }
        if !pattern.utf8.contains(where: glob.contains), let problem = bucketProblem(pattern) {
            return "is not a bucket name: \(problem)"
        }
        return nil
    }

    private static func isBucketByte(_ b: UInt8) -> Bool {
        isAlphanumeric(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "-")
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }

    /// Four dot-separated runs of digits: S3 refuses such names whatever their values.
    private static func isIPv4(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy { (48...57).contains($0) } }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
