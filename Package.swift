// swift-tools-version:6.0
// prerank — an online pre-rank scoring server for twin-tower ResFlow models.
//
// Dependency direction (see README "Layout"):
//   TwinTower (model math, formats) ─> StrictJSON (JSON scanner, APIError) ─> Catalog (index,
//   kernel, delta, update log + codec); none of them knows HTTP.
//   HTTPTransport (sockets, TLS, HTTP/1.1 framing, memory budget; no JSON API, no config) ─┐
//   TwinTower, Catalog ─────────────────┐                                                  │
//   Fusion (policy on probabilities) ───┼─> PreRankServer (App: routes, config, ops) <─────┘ ─> prerank (CLI)
//   Training (generate, train, eval) ───┘        LoadTest (open-loop client; Catalog) ─┤
//                                                TestWorlds (bench fixture) ─> Benchmarks ─┘
import PackageDescription

// No ISA flags on any target: the AVX2/FMA/F16C code is the C kernel's, compiled with function
// target attributes and chosen at run time (pk_kernel_isa), so the binary runs on any x86-64 and
// the TwinTower and Fusion products can be depended on (SwiftPM refuses `unsafeFlags` in a
// dependency). Dropping `-target-cpu haswell` from the Swift targets was measured with
// `prerank bench --scenarios gather,request` before and after (docs/PERFORMANCE.md "Portability").

/// The commit `prerank_build_info{commit}` reports: `PRERANK_GIT_COMMIT` in the build's
/// environment (scripts/test.sh and the Dockerfile set it), else "unknown". Read here because
/// SwiftPM has no build-time hook for a Swift constant; a C define carries it into CKernels.
/// A different value rebuilds every target that imports CKernels: set it for release builds
/// (scripts/test.sh, the Dockerfile), not in an edit-build loop.
let gitCommit: String = {
    let raw = Context.environment["PRERANK_GIT_COMMIT"] ?? ""
    let ok = !raw.isEmpty && raw.count <= 64 && raw.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
    return ok ? raw : "unknown"
}()

let package = Package(
    name: "prerank",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "prerank", targets: ["prerank"]),
        .library(name: "TwinTower", targets: ["TwinTower"]),
        .library(name: "Fusion", targets: ["Fusion"]),
        // Catalog and StrictJSON: for the fuzz package (the change codec, the update log, the
        // index file) and for tools built on the index; `prerank` is still the shipped product.
        .library(name: "Catalog", targets: ["Catalog"]),
        .library(name: "StrictJSON", targets: ["StrictJSON"]),
        // For the fuzz package (Fuzz/Package.swift), which reaches the server's decoders and
        // connection state machine; the shipped product is still only `prerank`.
        .library(name: "PreRankServer", targets: ["PreRankServer"]),
        // For the fuzz package's http, chunked and gzip targets (the transport's own types).
        .library(name: "HTTPTransport", targets: ["HTTPTransport"]),
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
        .target(name: "CKernels", cSettings: [.define("PK_GIT_COMMIT", to: "\"\(gitCommit)\"")]),
        .target(name: "TwinTower", dependencies: ["CBLAS", "COpenSSL"]),
        // The strict JSON scanner and the 400 it throws, shared by the server's request decoder
        // and the catalog's change codec (neither owns the other).
        .target(name: "StrictJSON", dependencies: ["TwinTower"]),
        // The item index and its scan kernel, the delta, the update log and its codec: what the
        // server serves and the offline tools build and inspect; no HTTP.
        .target(name: "Catalog", dependencies: ["TwinTower", "StrictJSON", "CKernels", "CZlib"]),
        .target(name: "Fusion"),
        .target(
            name: "Training",
            dependencies: ["TwinTower", "Catalog", "Fusion", "CBLAS", .product(name: "Yams", package: "Yams")]
        ),
        // HTTP/1.1 on raw sockets + Dispatch: framing, connections, TLS, the memory budget. It
        // knows no JSON API and no config: the server gives it limits and renders its refusals.
        .target(
            name: "HTTPTransport",
            dependencies: ["CZlib", "COpenSSL", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "PreRankServer",
            dependencies: [
                "TwinTower", "Fusion", "CZlib", "COpenSSL",
                "HTTPTransport", "Catalog", "StrictJSON", "CKernels",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The synthetic bench world (model + indexes): a fixture for the engine tests and for
        // `prerank bench`; nothing the server runs depends on it.
        .target(name: "TestWorlds", dependencies: ["PreRankServer", "Catalog", "TwinTower"]),
        // `prerank bench`: the kernel, request-stage and codec benchmarks (kept out of the server library).
        .target(
            name: "Benchmarks",
            dependencies: ["PreRankServer", "Catalog", "TwinTower", "Fusion", "TestWorlds"]
        ),
        .target(
            name: "LoadTest",
            dependencies: [
                "Catalog", "TwinTower",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "prerank",
            dependencies: [
                "TwinTower", "Fusion", "Training", "PreRankServer", "LoadTest", "Benchmarks",
                "Catalog", "TestWorlds",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "TwinTowerTests", dependencies: ["TwinTower"]),
        .testTarget(name: "FusionTests", dependencies: ["Fusion"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "TwinTower", "Fusion", "Catalog"]),
        .testTarget(name: "CatalogTests", dependencies: ["Catalog", "StrictJSON", "TwinTower", "CKernels"]),
        .testTarget(name: "PreRankServerTests", dependencies: ["PreRankServer", "TwinTower", "Fusion", "Benchmarks", "LoadTest", "HTTPTransport", "Catalog", "StrictJSON", "TestWorlds"]),
        .testTarget(name: "HTTPTransportTests", dependencies: ["HTTPTransport"]),
    ]
)
