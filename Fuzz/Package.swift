// swift-tools-version:6.0
// The libFuzzer targets of prerank (docs/FUZZING.md). A package of its own so that the normal
// `swift build` / `swift test` never compile it: scripts/fuzz.sh builds it with
// `--sanitize=fuzzer --sanitize=address` into .build-fuzz/. It depends on the main package by
// path and reaches internal types (`ConnectionStateMachine`, in HTTPTransport) with `@testable import`, which a
// debug build allows.
import PackageDescription

let package = Package(
    name: "prerank-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "prerank", path: ".."),
    ],
    targets: [
        // One binary holds all nine targets; PRERANK_FUZZ_TARGET picks one (scripts/fuzz.sh sets it).
        .executableTarget(
            name: "PreRankFuzz",
            dependencies: [
                .product(name: "TwinTower", package: "prerank"),
                .product(name: "StrictJSON", package: "prerank"),
                .product(name: "Catalog", package: "prerank"),
                .product(name: "PreRankServer", package: "prerank"),
                .product(name: "HTTPTransport", package: "prerank"),
            ]
        ),
    ],
    // The targets are single-threaded libFuzzer callbacks; Swift 5 mode spares them the
    // strict-concurrency ceremony around C globals (stderr) and the selected target.
    swiftLanguageModes: [.v5]
)
