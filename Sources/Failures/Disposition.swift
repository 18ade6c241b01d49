// What the engine does about a failure, whichever module raised it.
//
// Errors that cross module boundaries — AWS answers, credential sources, HTTP transport, outputs,
// the journal, the gzip and record decoders — carry an open `Code` (a `RawRepresentable` struct, so a
// new code is not a breaking change) and conform to `ClassifiedError`, which says what to do about
// them. The engine switches on that one answer instead of catching concrete types.
//
// Invariants:
// 1. Every error the engine's loops can meet is classified; anything else (a programming error, an
//    error type added without a disposition) is `fatal`: the process ends and the journal resumes
//    the work, rather than a loop guessing.
// 2. `wait` never counts against the item (nothing is wrong with it: the disk or the credentials
//    are); `retry` counts an attempt, and an item out of attempts is quarantined with the reason.
// 3. `quarantine` is for what retrying cannot mend: the bytes are bad, the item is refused, the
//    object is gone or forbidden, or it is past a bound no wait can change (a token past the record
//    limit, a body past `input.max_object_size` uncompressed, a body no empty journal could hold).
//    The reason is kept for `journal status` and `journal retry`.

/// How a failure is handled.
public struct Disposition: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// Transient (a network error, throttling, a server error): back off and try again; it counts an
    /// attempt against the item.
    public static let retry = Disposition(rawValue: "retry")
    /// A shared resource is missing (the journal's disk is full, no credentials can be had): wait
    /// for it without counting an attempt.
    public static let wait = Disposition(rawValue: "wait")
    /// The item itself is bad or refused: set it aside with the reason; healthy work goes on.
    public static let quarantine = Disposition(rawValue: "quarantine")
    /// The engine cannot go on (a damaged or broken journal, a configuration or an environment no retry
    /// mends, such as a container credentials URI the AWS SDKs refuse).
    public static let fatal = Disposition(rawValue: "fatal")

    /// The disposition of any error: a ``ClassifiedError``'s own, `fatal` for anything else.
    public static func of(_ error: any Error) -> Disposition {
        (error as? any ClassifiedError)?.disposition ?? .fatal
    }
}

/// An error that says how it is handled.
public protocol ClassifiedError: Error, CustomStringConvertible {
    var disposition: Disposition { get }
}
