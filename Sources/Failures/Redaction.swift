// Secrets in URLs, kept out of every text cloudtrailbeat makes.
//
// A URL may carry credentials in its userinfo (`https://user:pass@host`): Elasticsearch hosts, the
// Splunk URL, endpoints. Wherever a URL becomes text — `test config`, error messages of the HTTP client
// and the outputs, log lines, what the journal records for `journal status` — it goes through
// ``redactingUserinfo(_:)`` first.
//
// Invariants:
// 1. The password of a `scheme://user:password@host` URL never survives: it becomes `***`. A userinfo
//    without a colon (`https://token@host`) is taken for a secret as a whole and becomes `***`.
// 2. Nothing but userinfo changes: the scheme, host, port, path and the text around a URL are kept, so
//    an error still says where it went wrong.
// 3. It works on any text, not only on a lone URL: every `://` in the text is looked at, so a message
//    that quotes a URL (`'https://u:p@h' is not a URL`, `https://u:p@h/_bulk answered HTTP 500`) is
//    redacted as a whole, and running it twice changes nothing more.

/// `text` with the userinfo of every URL in it redacted: `https://user:pass@host` becomes
/// `https://user:***@host`, `https://token@host` becomes `https://***@host`.
///
/// A URL's authority runs from its `://` to the first `/`, `?`, `#`, or character no URL holds
/// (whitespace, a double quote, `<>{}|\^` and the backtick); its userinfo is what precedes its last `@`.
public func redactingUserinfo(_ text: String) -> String {
    guard text.utf8.count >= 4, text.contains("://") else { return text }
    let bytes = Array(text.utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
        guard i + 2 < bytes.count, bytes[i] == UInt8(ascii: ":"), bytes[i + 1] == UInt8(ascii: "/"), bytes[i + 2] == UInt8(ascii: "/") else {
            out.append(bytes[i])
            i += 1
            continue
        }
        out += [UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "/")]
        let start = i + 3
        var end = start
        var lastAt: Int?
        while end < bytes.count, !endsAuthority(bytes[end]) {
            if bytes[end] == UInt8(ascii: "@") { lastAt = end }
            end += 1
        }
        if let at = lastAt {
            let userinfo = bytes[start..<at]
            if let colon = userinfo.firstIndex(of: UInt8(ascii: ":")) {
                out += bytes[start...colon]
            }
            out += Array("***".utf8)
            out += bytes[at..<end]
        } else {
            out += bytes[start..<end]
        }
        i = end
    }
    return String(decoding: out, as: UTF8.self)
}

/// Whether `byte` ends a URL's authority: a path, query or fragment begins, or a character no URL holds
/// (whitespace, a double quote, angle brackets, braces). RFC 3986's sub-delimiters (`'`, `,`, `)`, `;` …)
/// may stand in a userinfo, so they do not end it.
private func endsAuthority(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"),
        UInt8(ascii: "\r"), UInt8(ascii: "\""), UInt8(ascii: "`"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "{"),
        UInt8(ascii: "}"), UInt8(ascii: "|"), UInt8(ascii: "\\"), UInt8(ascii: "^"):
        return true
    default:
        return false
    }
}
