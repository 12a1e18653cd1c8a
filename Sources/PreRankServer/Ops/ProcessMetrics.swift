#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The standard `process_*` metrics every Prometheus client library exports, read from /proc at
/// scrape time (so they are current without a polling thread). Linux only; elsewhere nothing
/// is rendered rather than zeros that would look true.
///
/// Why not swift-metrics-extras' SystemMetrics: it samples on a timer into a swift-metrics
/// backend, and this registry renders one consistent snapshot under one lock per scrape; six
/// /proc reads per scrape are cheaper than a second metrics system.
public struct ProcessMetrics: Sendable, Equatable {
    public var cpuSeconds: Double
    public var residentBytes: Double
    public var virtualBytes: Double
    public var openFDs: Int
    public var maxFDs: Int?
    public var startTimeSeconds: Double

    /// Reads /proc/self/{stat,statm,fd,limits} and /proc/stat's boot time; nil where /proc is
    /// missing or not in the expected form.
    public static func read() -> ProcessMetrics? {
        #if os(Linux)
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let sys = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        // Fields after the parenthesised command (which may hold spaces): state is field 3.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let f = stat[stat.index(after: close)...].split(separator: " ")
        // f[0] = field 3 (state); utime 14, stime 15, starttime 22 → f[11], f[12], f[19].
        guard f.count > 19, let utime = Double(f[11]), let stime = Double(f[12]), let start = Double(f[19]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        let m = statm.split(separator: " ")
        guard m.count >= 2, let size = Double(m[0]), let resident = Double(m[1]) else { return nil }
        guard let btimeLine = sys.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let btime = Double(btimeLine.dropFirst(6).trimmingCharacters(in: .whitespaces)) else { return nil }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return ProcessMetrics(cpuSeconds: (utime + stime) / ticks, residentBytes: resident * page,
                              virtualBytes: size * page, openFDs: max(fds - 1, 0),  // minus the listing's own fd
                              maxFDs: maxOpenFiles(), startTimeSeconds: btime + start / ticks)
        #else
        return nil
        #endif
    }

    /// The soft limit of "Max open files" in /proc/self/limits (nil if unlimited or unreadable).
    static func maxOpenFiles() -> Int? {
        guard let limits = try? String(contentsOfFile: "/proc/self/limits", encoding: .utf8),
              let line = limits.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }) else { return nil }
        return Int(line.dropFirst("Max open files".count).split(separator: " ").first ?? "")
    }

    /// The exposition text of the six metrics.
    public func render() -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", "\(cpuSeconds)")
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "\(Int64(residentBytes))")
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "\(Int64(virtualBytes))")
        metric("process_open_fds", "gauge", "Number of open file descriptors.", "\(openFDs)")
        if let maxFDs { metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", "\(maxFDs)") }
        metric("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", "\(startTimeSeconds)")
        return out
    }
}
