// The child of the file output's kill -9 test (Tests/OutputsTests/FileOutputTests.swift).
//
// Usage: output-crash-child <dir> <first-event>
// Writes events e<first>, e<first+1>, … in batches through FileOutput; after each batch is acknowledged
// (fsynced) it prints the next event number on stdout. The parent SIGKILLs it at a random moment.
import Foundation
import Outputs

let args = CommandLine.arguments
guard args.count == 3, var next = Int(args[2]) else { exit(2) }
var config = FileOutput.Configuration(path: args[1])
config.rotateEveryKB = 64
config.numberOfFiles = 1000
let output = try FileOutput(config)
while true {
    let batch = (next..<next + 37).map { OutputEvent(id: "e\($0)", json: Array("{\"id\":\"e\($0)\",\"pad\":\"\(String(repeating: "x", count: $0 % 300))\"}".utf8)) }
    let report = try await output.deliver(batch)
    next += report.handled
    let line = Array("\(next)\n".utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}
