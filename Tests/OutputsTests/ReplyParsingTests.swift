import Foundation
import Testing

@testable import Outputs

/// The reply parsers the fuzz targets drive (Fuzz/), on inputs that once hung or crashed them and on
/// the framing rules they keep.
@Suite("reply parsing: redis, Lumberjack ACKs, bulk answers")
struct ReplyParsingTests {
    func replies(_ text: String) -> MemoryReplies { MemoryReplies(Array(text.utf8)) }

    @Test func linesEndOnlyAtCRLFAndABareLFIsPartOfTheLine() throws {
        let r = replies("+a\nb\r\n\r\n+c\r\n")
        #expect(try r.readLine() == Array("+a\nb".utf8))
        #expect(try r.readLine() == [])
        #expect(try r.readLine() == Array("+c".utf8))
        #expect(throws: TCPError.self) { try r.readLine() }
    }

    @Test func aLineThatNeverEndsIsRefusedOnceItPassesTheLimit() {
        var inbox = Inbox()
        inbox.append([UInt8](repeating: UInt8(ascii: "x"), count: Inbox.maxLine))
        #expect((try? inbox.line()) == .some(nil), "up to the limit it waits for more")
        inbox.append([UInt8(ascii: "x"), 0x0d])
        #expect(throws: TCPError.self) { try inbox.line() }
    }

    @Test func aLineSplitAcrossArrivalsBetweenCRAndLF() throws {
        var inbox = Inbox()
        inbox.append(Array("+OK\r".utf8))
        #expect(try inbox.line() == nil)
        inbox.append([0x0a] + Array(":1\r\n".utf8))
        #expect(try inbox.line() == Array("+OK".utf8))
        #expect(try inbox.line() == Array(":1".utf8))
    }

    @Test func redisRepliesSuccessErrorsAndNestedArraysConsumeTheirWholeReply() throws {
        let r = replies("+OK\r\n:3\r\n$5\r\nhello\r\n$-1\r\n*2\r\n-ERR first\r\n-ERR second\r\n*-1\r\n:7\r\n")
        #expect(try RedisOutput.reply(r) == nil)
        #expect(try RedisOutput.reply(r) == nil)
        #expect(try RedisOutput.reply(r) == nil)
        #expect(try RedisOutput.reply(r) == nil)
        #expect(try RedisOutput.reply(r) == "ERR first", "the first error of an array, and the array is read whole")
        #expect(try RedisOutput.reply(r) == nil, "the null array")
        #expect(try RedisOutput.reply(r) == nil, "and the reply after it is where it should be")
    }

    @Test(arguments: [
        "$9223372036854775807\r\n",  // Int.max: n + 2 overflowed
        "$-5\r\n",
        "$2000000\r\n",  // beyond maxBulkReply
        "$3\r\nabcde\r\n",  // not ended by CRLF where the length says
        "*99999999999\r\n",
        String(repeating: "*1\r\n", count: 100_000) + ":1\r\n",  // nesting that exhausted the stack
        "\r\n",
        "?what\r\n",
    ])
    func redisProtocolErrorsAreErrorsNotCrashes(_ text: String) {
        #expect(throws: TCPError.self) { try RedisOutput.reply(replies(text)) }
    }

    func ack(_ seq: Int) -> [UInt8] {
        [0x32, 0x41, UInt8(seq >> 24 & 0xff), UInt8(seq >> 16 & 0xff), UInt8(seq >> 8 & 0xff), UInt8(seq & 0xff)]
    }

    @Test func lumberjackWindowsAreAcknowledgedWholeThroughKeepalivesAndOutOfOrderAcks() throws {
        var seen: [Int] = []
        let acked = try LogstashOutput.awaitAcks(MemoryReplies(ack(0) + ack(2) + ack(1) + ack(5)), window: 5) { seen.append($0) }
        #expect(acked == 5)
        #expect(seen == [2, 5], "an older ACK after a newer one changes nothing")
        #expect(throws: TCPError.self) { try LogstashOutput.awaitAcks(MemoryReplies(ack(6)), window: 5) }
        #expect(throws: TCPError.self) { try LogstashOutput.awaitAcks(MemoryReplies([0x32, 0x57, 0, 0, 0, 1]), window: 5) }
        var partial = 0
        #expect(throws: TCPError.self) { try LogstashOutput.awaitAcks(MemoryReplies(ack(3) + [0x32]), window: 5) { partial = $0 } }
        #expect(partial == 3, "what was acknowledged before the connection broke is reported")
    }

    @Test func bulkAnswersHandledDeadLettersAndRetryPoint() {
        let body = #"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}},{"create":{"status":429}},{"create":{"status":201}}]}"#
        let report = ElasticsearchOutput.bulkReport(Array(body.utf8), count: 5)
        #expect(report?.handled == 3)
        #expect(report?.deadLetters.map(\.index) == [2])
        #expect(ElasticsearchOutput.bulkReport(Array(body.utf8), count: 4) == nil, "an answer for another batch size")
        #expect(ElasticsearchOutput.bulkReport(Array("<html>".utf8), count: 1) == nil)
    }
}
