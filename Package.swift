// swift-tools-version:6.0
// prerank — an online pre-rank scoring server for twin-tower ResFlow models.
//
// Dependency direction (see README "Layout"):
//   TwinTower (model math, formats, index) ─┐
//   Fusion (policy on probabilities) ───────┼─> PreRankServer (HTTP, config, ops) ─> prerank (CLI)
//   Training (generate, train, eval) ───────┘        LoadTest (open-loop client) ─┤
//                                                    Benchmarks (prerank bench) ──┘
import PackageDescription

/// `SIMD.addProduct` lowers to libm `fmaf` calls unless FMA is enabled (13x slower, measured in
/// docs/PERFORMANCE.md). `unsafeFlags` is allowed because this is the root package.
let kernelFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]

let package = Package(
    name: "prerank",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "prerank", targets: ["prerank"]),
        .library(name: "TwinTower", targets: ["TwinTower"]),
        .library(name: "Fusion", targets: ["Fusion"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // System C libraries: one-line shim headers plus inline wrappers for macros.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),

        // The fused scoring loop in C (prefetch intrinsics, AVX2/FMA/F16C via target attributes).
        .target(name: "CKernels"),
        .target(name: "TwinTower", dependencies: ["CBLAS", "COpenSSL", "CKernels"], swiftSettings: kernelFlags),
        .target(name: "Fusion", swiftSettings: kernelFlags),
        .target(
            name: "Training",
            dependencies: ["TwinTower", "Fusion", "CBLAS", .product(name: "Yams", package: "Yams")],
            swiftSettings: kernelFlags
        ),
        .target(
            name: "PreRankServer",
            dependencies: [
                "TwinTower", "Fusion", "CZlib", "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: kernelFlags
        ),
        // `prerank bench`: the kernel and request-stage benchmarks (kept out of the server library).
        .target(
            name: "Benchmarks",
            dependencies: ["PreRankServer", "TwinTower", "Fusion"],
            swiftSettings: kernelFlags
        ),
        .target(
            name: "LoadTest",
            dependencies: [
                "PreRankServer", "TwinTower",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "prerank",
            dependencies: [
                "TwinTower", "Fusion", "Training", "PreRankServer", "LoadTest", "Benchmarks",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: kernelFlags
        ),

        .testTarget(name: "TwinTowerTests", dependencies: ["TwinTower"], swiftSettings: kernelFlags),
        .testTarget(name: "FusionTests", dependencies: ["Fusion"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "TwinTower", "Fusion"]),
        .testTarget(name: "PreRankServerTests", dependencies: ["PreRankServer", "TwinTower", "Fusion", "Benchmarks"]),
    ]
)
