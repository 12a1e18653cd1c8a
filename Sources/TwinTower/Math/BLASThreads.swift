import CBLAS

/// OpenBLAS's own thread pool, which must not fight a server's worker threads.
public enum BLASThreads {
    /// Pins OpenBLAS to `n` threads (1 in the server: parallelism comes from the workers).
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
