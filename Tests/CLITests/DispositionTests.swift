import AWS
import Failures
import HTTP
import Journal
import Outputs
@testable import Stages
import Testing

/// The one answer the engine switches on, for every error that crosses into it. The behaviour behind
/// each disposition is tested end to end elsewhere (OutageTests: credentials and a full disk wait;
/// RerunTests: corrupt and missing objects are quarantined); this pins which errors get which.
@Suite("failure dispositions")
struct DispositionTests {
    func aws(_ kind: AWSError.Kind) -> AWSError {
        AWSError(kind: kind, code: "X", message: "", requestID: nil, status: nil, service: "s3", operation: "GetObject")
    }

    @Test func awsErrorsRetryWaitOrQuarantine() {
        #expect(Disposition.of(aws(.network)) == .retry)
        #expect(Disposition.of(aws(.server)) == .retry)
        #expect(Disposition.of(aws(.throttled)) == .retry)
        #expect(Disposition.of(aws(.credentials)) == .wait, "no credentials is not the object's fault")
        for kind in [AWSError.Kind.notFound, .auth, .kmsAccess, .client] {
            #expect(Disposition.of(aws(kind)) == .quarantine, "\(kind): retrying cannot mend it")
        }
    }

    @Test func errorsOfTheOtherModules() {
        #expect(Disposition.of(CredentialsError(message: "IMDS unreachable")) == .wait)
        #expect(Disposition.of(HTTPTransportError(code: 7, message: "connection refused", url: "http://127.0.0.1:1/")) == .retry)
        #expect(Disposition.of(JournalError(.full, operation: "commit")) == .wait)
        #expect(Disposition.of(JournalError(.corrupt, operation: "open")) == .fatal)
        #expect(Disposition.of(JournalError(.damaged, operation: "open")) == .fatal)
        #expect(Disposition.of(JournalError(.lmdb, lmdbCode: .pageNotFound, operation: "mdb_cursor_get")) == .fatal, "a damaged page met mid-run")
        #expect(Disposition.of(CredentialsError(code: .refused, message: "AWS_CONTAINER_CREDENTIALS_FULL_URI: refused")) == .fatal)
        #expect(Disposition.of(GunzipError(code: .corrupt, offset: 3, message: "bad")) == .quarantine)
        #expect(Disposition.of(GunzipError(code: .resources, offset: 0, message: "no memory")) == .retry)
        #expect(Disposition.of(SplitError(code: .malformedJSON, offset: 9, recordIndex: nil, message: "bad")) == .quarantine)
        // The bounds (issue 31): a key that never ends, a zip bomb, a body no empty journal could hold.
        #expect(Disposition.of(SplitError(code: .recordTooLarge, offset: 2, recordIndex: nil, message: "a top-level key is too large")) == .quarantine)
        #expect(Disposition.of(SplitError(code: .objectTooLarge, offset: 1 << 30, recordIndex: nil, message: "bomb")) == .quarantine)
        #expect(Disposition.of(JournalError(.bodyTooLarge, operation: "store body")) == .quarantine, "it would wait for ever")
        #expect(Disposition.of(OutputError(output: "redis", message: "connection refused")) == .retry)
        #expect(Disposition.of(OutputError(output: "redis", code: .refused, message: "AUTH refused")) == .fatal)
        #expect(Disposition.of(OutputError(output: "file", code: .configuration, message: "no path")) == .fatal)
    }

    struct Unclassified: Error {}

    @Test func anythingUnclassifiedIsFatal() {
        #expect(Disposition.of(Unclassified()) == .fatal)
        #expect(Disposition.of(CancellationError()) == .fatal, "cancellation ends loops, it is never retried")
    }
}
