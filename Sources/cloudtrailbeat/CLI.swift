import ArgumentParser
import Engine
import Foundation
import Journal

@main
struct CloudTrailBeat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cloudtrailbeat",
        abstract: "A crash-safe shipper of AWS CloudTrail logs.",
        subcommands: [JournalCommand.self])
}

struct JournalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Inspect the on-disk journal.",
        subcommands: [Status.self, GC.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show counts per stage, quarantined items with reasons, backfill jobs and disk use.")

        @Option(name: [.customLong("path")], help: "The journal directory (journal.path).")
        var path: String

        @Flag(help: "Print one JSON object instead of text.")
        var json = false

        func run() throws {
            do {
                let report = try JournalInspector.status(path: path)
                print(json ? report.json() : report.text())
            } catch let error as JournalError {
                FileHandle.standardError.write(Data("cloudtrailbeat: error: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Free stored bodies of finished objects and expired done markers now.")

        @Option(name: [.customLong("path")], help: "The journal directory (journal.path).")
        var path: String

        func run() async throws {
            do {
                let r = try await JournalMaintenance.collect(path: path)
                print("freed \(r.chunksFreed) body chunks, removed \(r.objectsRemoved) finished objects, expired \(r.markersExpired) done markers")
            } catch let error as JournalError {
                FileHandle.standardError.write(Data("cloudtrailbeat: error: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
