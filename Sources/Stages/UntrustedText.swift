/// Text that came from outside (a key, a message body, a peer's answer) as it may be written to a log
/// line, a terminal or `journal status`: every control character escaped, so it stays on its line and
/// moves no cursor.
public enum UntrustedText {
    /// `text` with every control character written as an escape (`\n`, `\t`, `\u{1B}`), so that
    /// untrusted text printed on a line stays one line and moves no terminal's cursor.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where isControl(scalar): out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// C0 controls, DEL and C1 controls.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

}
