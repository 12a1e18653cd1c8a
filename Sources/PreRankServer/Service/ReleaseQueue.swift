import Dispatch

/// The background queue on which replaced models and indexes are freed and unmapped, off the
/// scoring workers and the I/O queues.
public enum ReleaseQueue {
    public static let shared = DispatchQueue(label: "prerank.release", qos: .utility)
}
