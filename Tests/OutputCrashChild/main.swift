// The child of the file output's kill -9 and file-size-limit tests (Tests/OutputsTests/OutputsTests.swift).
//
// Usage: output-crash-child <dir> <first-event> [<file-size-limit-bytes>]
// Writes events e<first>, e<first+1>, … in batches through FileOutput; after each batch is acknowledged
// (fsynced) it prints the next event number on stdout. The parent SIGKILLs it at a random moment.
//
// With a file-size limit (RLIMIT_FSIZE, the way to make writes fail part-way without a full disk) it
// writes until a batch fails, prints "failed: <error>", lifts the limit, retries the same batch as
// OutputPump would, prints the next event number and exits 0.
import Foundation
import Outputs

let args = CommandLine.arguments
guard args.count == 3 || args.count == 4, var next = Int(args[2]) else { exit(2) }
var config = FileOutput.Configuration(path: args[1])
config.rotateEveryKB = 64
config.numberOfFiles = 1000
let output = try FileOutput(config)

func say(_ text: String) {
    let line = Array("\(text)\n".utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

func batch(_ first: Int) -> [OutputEvent] {
    (first..<first + 37).map { OutputEvent(id: "e\($0)", json: Array("{\"id\":\"e\($0)\",\"pad\":\"\(String(repeating: "x", count: $0 % 300))\"}".utf8)) }
}

if args.count == 4, let limit = Int(args[3]) {
    signal(SIGXFSZ, SIG_IGN)  // a write past the limit then fails with EFBIG instead of killing the process
    var rl = rlimit()
    getrlimit(Int32(RLIMIT_FSIZE.rawValue), &rl)
    rl.rlim_cur = rlim_t(limit)
    guard setrlimit(Int32(RLIMIT_FSIZE.rawValue), &rl) == 0 else { exit(3) }
    while true {
        do {
            next += try await output.deliver(batch(next)).handled
            say(String(next))
        } catch {
            say("failed: \(error)")
            rl.rlim_cur = rl.rlim_max
            guard setrlimit(Int32(RLIMIT_FSIZE.rawValue), &rl) == 0 else { exit(3) }
            next += try await output.deliver(batch(next)).handled
            say(String(next))
            exit(0)
        }
    }
}

while true {
    next += try await output.deliver(batch(next)).handled
    say(String(next))
}
