import Catalog
import CKernels
import TwinTower

/// What this binary is: `prerank_build_info{version,commit,swift,kernel} 1`, `prerank --version`,
/// and the `prerank bench` header, so an operator can tell which build and which kernel path
/// answered.
public enum BuildInfo {
    /// The release version of prerank.
    public static let version = "0.1.0"
    /// The git commit, from `PRERANK_GIT_COMMIT` at build time (Package.swift), else "unknown".
    public static var commit: String { String(cString: pk_build_commit()) }
    /// The Swift compiler that built the binary (major.minor; `#if compiler` has no finer string).
    public static let swift: String = {
        #if compiler(>=6.4)
        return ">=6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }()
    /// The scoring kernel in use: "avx2" or "scalar" (`ItemIndex.kernelISA`).
    public static var kernel: String { ItemIndex.kernelISA }

    /// The one-line description for `--version` and the bench header.
    public static var summary: String { "prerank \(version) (commit \(commit), Swift \(swift), kernel \(kernel))" }
}

extension BuildInfo {
    /// The refusal for a `PRERANK_KERNEL` the kernel would not honour, or nil. Accepted: unset,
    /// "auto", "scalar" (the portable path), and "avx2" on a CPU that has AVX2, FMA and F16C.
    /// The C side treats anything else as auto so it can never SIGILL; the CLI says so instead of
    /// ignoring a typo.
    public static func kernelEnvironmentProblem(_ environment: [String: String]) -> String? {
        guard let value = environment["PRERANK_KERNEL"], !value.isEmpty else { return nil }
        switch value {
        case "auto", "scalar": return nil
        case "avx2":
            return pk_cpu_has_avx2() != 0 ? nil : "PRERANK_KERNEL=avx2: this CPU lacks AVX2, FMA or F16C (unset it or use scalar)"
        default:
            return "PRERANK_KERNEL=\(value) is not a kernel: use auto, scalar or avx2"
        }
    }
}
