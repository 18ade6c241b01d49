// swift-tools-version: 6.1
// cloudtrailbeat — a crash-safe shipper of AWS CloudTrail logs.
//
// Dependencies point one way: C shims, Failures → Journal, Stages, HTTP → AWS, Outputs, Codecs, SNSSignature, Integrity → Engine → CLI.
// Only Journal imports CLMDB; only Engine brings stages and journal together;
// the CLI only parses and wires.
import PackageDescription

// MARK: - Shared dependencies

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")
let cryptoExtras: Target.Dependency = .product(name: "_CryptoExtras", package: "swift-crypto")
let x509: Target.Dependency = .product(name: "X509", package: "swift-certificates")
let yams: Target.Dependency = .product(name: "Yams", package: "Yams")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let prometheus: Target.Dependency = .product(name: "Prometheus", package: "swift-prometheus")
let serviceLifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals: Target.Dependency = .product(name: "UnixSignals", package: "swift-service-lifecycle")

// MARK: - Package

let package = Package(
    name: "cloudtrailbeat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cloudtrailbeat", targets: ["cloudtrailbeat"]),
        .library(name: "Journal", targets: ["Journal"]),
        .library(name: "Stages", targets: ["Stages"]),
        .library(name: "HTTP", targets: ["HTTP"]),
        .library(name: "AWS", targets: ["AWS"]),
        .library(name: "Outputs", targets: ["Outputs"]),
        .library(name: "Codecs", targets: ["Codecs"]),
        .library(name: "SNSSignature", targets: ["SNSSignature"]),
        .library(name: "Integrity", targets: ["Integrity"]),
        .library(name: "Engine", targets: ["Engine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // MARK: C shims (system libraries, one concern each)
        .systemLibrary(
            name: "CLMDB", pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"]), .brew(["lmdb"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        .systemLibrary(
            name: "CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"]), .brew(["curl"])]),

        .systemLibrary(
            name: "COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"]), .brew(["openssl"])]),
        // prctl (variadic in C) for the CLI's process settings; a header only, nothing to link.
        .systemLibrary(name: "CProcess"),

        // MARK: Swift modules
        // How a failure is handled (retry, wait, quarantine, fatal): what every module's errors say.
        .target(name: "Failures"),
        .target(name: "Journal", dependencies: ["CLMDB", "Failures", crypto]),
        .target(name: "Stages", dependencies: ["CZlib", "Failures", crypto]),
        .target(name: "HTTP", dependencies: ["CCurl", "Failures"]),
        .target(name: "AWS", dependencies: ["HTTP", "Failures", crypto]),
        .target(name: "Outputs", dependencies: ["HTTP", "Stages", "CZlib", "COpenSSL", "Failures"], resources: [.copy("Resources/cloudtrail-index-template.json")]),
        .target(name: "Codecs", dependencies: ["Stages"]),
        // Verifies SNS message signatures (certificates fetched over HTTPS, RSA through swift-certificates).
        .target(name: "SNSSignature", dependencies: ["HTTP", x509]),
        // CloudTrail log-file validation: digests, their signatures (RSA through swift-crypto), verdicts.
        .target(name: "Integrity", dependencies: ["Stages", crypto, cryptoExtras]),
        .target(name: "Engine", dependencies: ["Failures", "Journal", "Stages", "Codecs", "AWS", "Outputs", "SNSSignature", "Integrity", yams, logging, prometheus, serviceLifecycle, unixSignals]),
        .executableTarget(name: "cloudtrailbeat", dependencies: ["Engine", "Failures", "CProcess", argumentParser, logging]),

        // MARK: Tests
        // A child process for the journal crash test: commits transitions in a loop
        // and reports each returned commit on stdout until it is SIGKILLed.
        .executableTarget(
            name: "journal-crash-child", dependencies: ["Journal"],
            path: "Tests/JournalCrashChild"),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "JournalTests", dependencies: ["Journal", "TestSupport", "journal-crash-child"]),
        // A child for the file output's kill -9 test: writes events, reports each acknowledged count.
        .executableTarget(
            name: "output-crash-child", dependencies: ["Outputs"],
            path: "Tests/OutputCrashChild"),
        .testTarget(name: "CLITests", dependencies: ["cloudtrailbeat", "Failures", "Journal", "Stages", "AWS", "Outputs", "Engine", "HTTP", "SNSSignature", "TestSupport", yams]),
        .testTarget(name: "StagesTests", dependencies: ["Stages", "TestSupport"]),
        .testTarget(name: "IntegrityTests", dependencies: ["Integrity", "Stages", "TestSupport", crypto, cryptoExtras]),
        .testTarget(name: "CodecsTests", dependencies: ["Codecs", "Stages", "TestSupport"]),
        .testTarget(name: "AWSTests", dependencies: ["AWS", "HTTP", "TestSupport", crypto], exclude: ["Fixtures"]),
        .testTarget(name: "OutputsTests", dependencies: ["Outputs", "HTTP", "TestSupport", "output-crash-child"], exclude: ["Fixtures"]),
    ]
)

for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    target.swiftSettings = settings
}
