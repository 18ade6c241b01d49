import Foundation
import Yams

/// YAML made safe for any bytes, for the configuration file and `-E` values.
///
/// Three shapes of input break Yams (found by the `config` fuzz target, Fuzz/): nesting thousands
/// deep (`[[[[…`) overflows the stack of its recursive composer; a mapping key that is itself a
/// collection (`? {a: b}: c`) crashes its constructor (a force unwrap); and aliases that repeat
/// aliases (`b: [*a, *a, …]`, nested) expand to billions of values from a few hundred bytes. So the
/// text's nesting gets sound bounds before Yams reads it (at most ``maxBrackets`` brackets, content
/// starting within ``maxIndent`` columns), Yams composes it on a thread whose stack holds that much
/// nesting, and the document's shape is checked — plain keys, a bounded number of values, at most
/// ``maxDepth`` levels — before it becomes values.
enum YAMLLoading {
    /// More values than any configuration has, far fewer than an alias bomb expands to.
    static let maxValues = 100_000
    static let maxDepth = 64
    /// Flow nesting is bounded by the number of brackets; Yams takes about 1.3 KiB of stack per level
    /// (with AddressSanitizer), so ``stackSize`` holds ``maxBrackets`` plus ``maxIndent`` levels.
    static let maxBrackets = 10_000
    static let stackSize = 64 << 20
    static let maxIndent = 128

    struct ShapeError: Error, CustomStringConvertible {
        var description: String
    }

    /// The document's value (nil for an empty document).
    static func load(_ text: String) throws -> Any? {
        try checkNesting(text)
        // Composed, checked and released on the big stack: a deep tree is deep to free too.
        return try onBigStack {
            guard let node = try Yams.compose(yaml: text) else { return nil }
            var budget = maxValues
            try check(node, depth: 0, budget: &budget)
            return node.any
        }
    }

    /// Sound upper bounds on the nesting Yams will recurse through, from the text alone: every flow
    /// level needs a `[` or `{`, so their count bounds flow nesting; every block level (`- - x`
    /// included) starts its content further right, so the column where a line's content starts bounds
    /// block nesting. (Telling brackets inside quotes and comments apart would need a YAML tokenizer,
    /// and an estimate that can be fooled is no bound.)
    static func checkNesting(_ text: String) throws {
        var brackets = 0
        var line = 1
        // The line's leading run of indentation and block indicators (`- `, `? `, `: `).
        var run = 0
        var indicator = false
        var previous: UInt8 = 0
        var atLineStart = true
        let indicators: [UInt8] = [UInt8(ascii: "-"), UInt8(ascii: "?"), UInt8(ascii: ":")]
        let tooDeep = { (line: Int) in ShapeError(description: "line \(line) starts its content beyond column \(maxIndent) (nested too deep)") }
        for c in text.utf8 {
            if c == 0x0a {
                // A line of indicators alone (`- - -`) nests; blank lines and `-----` do not.
                if atLineStart && (indicator || indicators.contains(previous)) && run > maxIndent { throw tooDeep(line) }
                (line, run, indicator, previous, atLineStart) = (line + 1, 0, false, 0, true)
                continue
            }
            if atLineStart {
                if c == 0x20 || c == 0x09 || indicators.contains(c) {
                    if (c == 0x20 || c == 0x09) && indicators.contains(previous) { indicator = true }
                    run += 1
                    previous = c
                    continue
                }
                atLineStart = false
                if run >= maxIndent { throw tooDeep(line) }
            }
            if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
                brackets += 1
                if brackets > maxBrackets { throw ShapeError(description: "more than \(maxBrackets) brackets: not a configuration") }
            }
        }
        if atLineStart && (indicator || indicators.contains(previous)) && run > maxIndent { throw tooDeep(line) }
    }

    /// Runs `body` on a thread whose stack holds the deepest nesting ``checkNesting(_:)`` lets through.
    static func onBigStack(_ body: @escaping @Sendable () throws -> Any?) throws -> Any? {
        final class Outcome: @unchecked Sendable {
            var result: Result<Any?, any Error> = .success(nil)
        }
        let outcome = Outcome()  // written by the thread before it signals, read after the wait
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            outcome.result = Result { try body() }
            done.signal()
        }
        thread.stackSize = stackSize
        thread.start()
        done.wait()
        return try outcome.result.get()
    }

    private static func check(_ node: Node, depth: Int, budget: inout Int) throws {
        budget -= 1
        guard budget >= 0 else {
            throw ShapeError(description: "more than \(maxValues) values (aliases that repeat aliases?)")
        }
        guard depth <= maxDepth else { throw ShapeError(description: "nested deeper than \(maxDepth) levels") }
        switch node {
        case .scalar:
            return
        case .sequence(let sequence):
            for element in sequence { try check(element, depth: depth + 1, budget: &budget) }
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard case .scalar = key else {
                    throw ShapeError(description: "a mapping key that is not a plain value (line \(key.mark.map { "\($0.line)" } ?? "?"))")
                }
                try check(value, depth: depth + 1, budget: &budget)
            }
        }
    }
}
