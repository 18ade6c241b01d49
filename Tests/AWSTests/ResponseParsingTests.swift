import Foundation
import HTTP
import Testing

@testable import AWS

/// The parsers of AWS answers the fuzz targets drive (Fuzz/): S3 listings, SQS answers, error bodies.
@Suite("AWS answer parsing")
struct ResponseParsingTests {
    static let regressions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz/Regressions")

    /// Inputs that crashed FoundationXML (names that are not UTF-8 after libxml2's decoding, an empty
    /// processing instruction): refused as not XML, so a listing is retried and an error body is classified by its status alone.
    @Test(arguments: [
        "listing/foundationxml-invalid-utf8-name.xml", "sqs/foundationxml-invalid-utf8-name.xml",
        "listing/foundationxml-empty-processing-instruction.xml", "sqs/foundationxml-empty-processing-instruction.xml",
        "sqs/foundationxml-pi-named-like-the-declaration.xml",
    ])
    func answersFoundationXMLCrashedOnAreRefused(_ name: String) throws {
        let bytes = try [UInt8](Data(contentsOf: ResponseParsingTests.regressions.appendingPathComponent(name)))
        #expect(XMLTree.parse(bytes) == nil)
        #expect(S3ListPage(xml: bytes, serverTime: nil) == nil)
        let e = AWSError.from(HTTPResponse(head: HTTPHead(status: 503, headers: []), body: bytes), service: "s3", operation: "ListObjectsV2")
        #expect(e.code == "HTTP503" && e.isRetryable)
    }

    @Test func onlyUTF8DocumentsReachTheParser() {
        let page = #"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Contents><Key>é &amp; k</Key><Size>5</Size><ETag>&quot;e&quot;</ETag></Contents><IsTruncated>false</IsTruncated></ListBucketResult>"#
        #expect(S3ListPage(xml: Array(page.utf8), serverTime: nil)?.objects == [.init(key: "é & k", size: 5, etag: "e", lastModified: nil)])
        #expect(XMLTree.parse(Array("<a>b</a>".utf8))?.text == "b", "no declaration is UTF-8")
        #expect(XMLTree.parse(Array(#"<?xml version='1.0' encoding='utf-8'?><a/>"#.utf8)) != nil)
        #expect(XMLTree.parse(Array(#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#.utf8)) == nil)
        #expect(XMLTree.parse([0x3c, 0x61, 0x3e, 0xff, 0x3c, 0x2f, 0x61, 0x3e]) == nil, "not UTF-8")
        #expect(XMLTree.parse(Array("<a><?pi?></a>".utf8)) == nil, "a processing instruction")
        #expect(XMLTree.parse(Array(#"<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>"#.utf8)) == nil, "a DTD")
        #expect(XMLTree.parse(Array("<a><!-- c --><![CDATA[<x>]]></a>".utf8))?.text == "<x>", "comments and CDATA stay")
        #expect(XMLTree.parse([0x3c, 0x00, 0x61, 0x00, 0x2f, 0x00, 0x3e, 0x00]) == nil, "NUL bytes (UTF-16)")
    }
}

/// The hand-written date formats of the request path (SigV4's X-Amz-Date, S3's Last-Modified).
@Suite("AWS dates")
struct AWSDateTests {
    @Test func amzDateIsUTCToTheSecond() {
        #expect(SigV4.amzDate(Date(timeIntervalSince1970: 1_440_938_160)) == "20150830T123600Z")
        #expect(SigV4.amzDate(Date(timeIntervalSince1970: 1_796_215_500.9)) == "20261202T124500Z")
        #expect(SigV4.amzDate(Date(timeIntervalSince1970: 0)) == "19700101T000000Z")
    }

    @Test func httpDatesParseAndNonsenseDoesNot() {
        #expect(S3ListPage.httpDate("Wed, 02 Dec 2026 12:45:00 GMT") == Date(timeIntervalSince1970: 1_796_215_500))
        #expect(S3ListPage.httpDate("Thu, 29 Feb 2024 23:59:59 GMT") == Date(timeIntervalSince1970: 1_709_251_199))
        for bad in ["", "Wed, 02 Dec 2026 12:45:00 UTC", "Wed, 02 Foo 2026 12:45:00 GMT", "Wed, 32 Dec 2026 12:45:00 GMT", "Wed, 02 Dec 2026 12:45 GMT", "garbage"] {
            #expect(S3ListPage.httpDate(bad) == nil, "\(bad)")
        }
    }
}
