// swift-tools-version: 6.1
// Benchmarks live in their own package so their dependencies never enter the product's graph.
// Run: swift run -c release --package-path Benchmarks journal-benchmark
//      swift run -c release --package-path Benchmarks stages-benchmark
import PackageDescription

let package = Package(
    name: "cloudtrailbeat-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "cloudtrailbeat", path: "../")],
    targets: [
        .executableTarget(
            name: "journal-benchmark",
            dependencies: [.product(name: "Journal", package: "cloudtrailbeat")],
            path: "Sources/JournalBenchmark"),
        .executableTarget(
            name: "stages-benchmark",
            dependencies: [.product(name: "Stages", package: "cloudtrailbeat")],
            path: "Sources/StagesBenchmark"),
    ]
)
