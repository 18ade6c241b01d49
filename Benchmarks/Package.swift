// swift-tools-version: 6.1
// Benchmarks live in their own package so their dependencies never enter the product's graph.
// Run: swift run -c release --package-path Benchmarks journal-benchmark
//      swift run -c release --package-path Benchmarks stages-benchmark
// All of them at once, with the release binary for the end-to-end one: Benchmarks/run
import PackageDescription

let package = Package(
    name: "cloudtrailbeat-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "cloudtrailbeat", path: "../")],
    targets: [
        .executableTarget(
            name: "journal-benchmark",
            dependencies: ["BenchmarkSupport", .product(name: "Journal", package: "cloudtrailbeat")],
            path: "Sources/JournalBenchmark"),
        .target(
            name: "BenchmarkSupport",
            dependencies: [.product(name: "Stages", package: "cloudtrailbeat")],
            path: "Sources/BenchmarkSupport"),
        .executableTarget(
            name: "stages-benchmark",
            dependencies: ["BenchmarkSupport", .product(name: "Stages", package: "cloudtrailbeat")],
            path: "Sources/StagesBenchmark"),
        .executableTarget(
            name: "e2e-benchmark",
            dependencies: ["BenchmarkSupport"],
            path: "Sources/EndToEndBenchmark"),
    ]
)
