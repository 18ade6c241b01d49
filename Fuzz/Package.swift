// swift-tools-version: 6.1
// Fuzz targets for every parser that reads bytes from the outside, in their own package so the
// sanitizer build never touches the product's. One dynamic library holds every target (instrumented
// with `-sanitize=fuzzer,address`); `Drivers/driver.c` links libFuzzer's `main` to one of them.
// SwiftPM gives executables their own entry point, which clashes with libFuzzer's, hence the split.
// Run: scripts/fuzz [--time SECONDS] [TARGET...]     (docs/fuzzing.md)
import PackageDescription

let package = Package(
    name: "cloudtrailbeat-fuzz",
    platforms: [.macOS(.v14)],
    products: [.library(name: "FuzzTargets", type: .dynamic, targets: ["FuzzTargets"])],
    dependencies: [.package(name: "cloudtrailbeat", path: "../")],
    targets: [
        .target(
            name: "FuzzTargets",
            dependencies: [
                .product(name: "Journal", package: "cloudtrailbeat"),
                .product(name: "Stages", package: "cloudtrailbeat"),
                .product(name: "Codecs", package: "cloudtrailbeat"),
                .product(name: "AWS", package: "cloudtrailbeat"),
                .product(name: "HTTP", package: "cloudtrailbeat"),
                .product(name: "Outputs", package: "cloudtrailbeat"),
                .product(name: "Engine", package: "cloudtrailbeat"),
                .product(name: "Integrity", package: "cloudtrailbeat"),
            ]),
    ]
)
