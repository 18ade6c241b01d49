import Foundation
import HTTP
import Testing
import TestSupport

/// The HTTP client's body contract: a body cancelled after it had fully arrived (a task cancelled while
/// its response came in) never reads as complete. It once read as an empty 200: the HEC output's tests
/// caught it when a delivery's cancellation raced its answer.
@Suite("HTTP body cancellation")
struct HTTPBodyCancellationTests {
    @Test func aCancelledBodyThrowsEvenWhenItHadArrived() async throws {
        let es = try protocolServer("es_server.py", name: "es")
        let http = HTTPClient()
        let (head, body) = try await http.stream(HTTPRequest(method: "GET", url: es.url + "/"))
        #expect(head.status == 200)
        try await Task.sleep(nanoseconds: 200_000_000)  // the small body is in the channel by now
        body.cancel()
        await #expect(throws: CancellationError.self) {
            for try await _ in body {}
        }
        // Uncancelled, the same body reads whole.
        let whole = try await http.send(HTTPRequest(method: "GET", url: es.url + "/"))
        #expect(String(decoding: whole.body, as: UTF8.self).contains(#""cluster_name": "ctb-test""#))
    }
}
