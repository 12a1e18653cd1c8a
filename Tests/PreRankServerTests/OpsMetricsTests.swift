import Catalog
import Foundation
import Testing
import TwinTower
@testable import PreRankServer
import HTTPTransport

/// /metrics by the Prometheus conventions (issue #12): counts since start are counters named
/// `*_total`, the standard process metrics are this process's, build info names the kernel.
/// promtool itself runs on a live server in Tests/reference/test_ops_truth.py.
@Suite struct OpsMetricsTests {
    func rendered() -> String {
        let m = MetricsRegistry()
        m.recordRequest(route: "/prerank", code: 200, seconds: 0.01)
        var t = HTTPServerStats()
        t.open = 2
        t.accepted = 7
        t.rejected = 1
        t.protocolErrors = 3
        t.timeouts = 4
        t.headTimeouts = 4
        m.setTransport(t)
        m.setGauge("prerank_worker_queue_depth", help: "Requests waiting for a worker.", value: 0)
        return m.render()
    }

    static func types(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            out[String(parts[2])] = String(parts[3])
        }
        return out
    }

    @Test func countsSinceStartAreCountersNamedTotal() {
        let text = rendered()
        let types = Self.types(text)
        for (name, type) in types {
            #expect(name.hasSuffix("_total") == (type == "counter"), "\(name) is a \(type)")
        }
        #expect(text.contains("prerank_http_connections_accepted_total 7\n"))
        #expect(text.contains("prerank_http_connections_rejected_total 1\n"))
        #expect(text.contains("prerank_http_protocol_errors_total 3\n"))
        #expect(text.contains("prerank_http_timeouts_total{kind=\"head\"} 4\n"))
        #expect(types["prerank_http_connections_open"] == "gauge")
        for old in ["prerank_http_connections_accepted", "prerank_http_connections_rejected", "prerank_http_protocol_errors",
                    "prerank_http_timeouts"] {
            #expect(types[old] == nil, "\(old) is still exported")
        }
        // Each family is declared once (promtool refuses a second TYPE line).
        let declared = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }
        #expect(Set(declared).count == declared.count)
    }

    @Test func buildInfoNamesTheKernelInUse() {
        let text = rendered()
        let line = "prerank_build_info{version=\"\(BuildInfo.version)\",commit=\"\(BuildInfo.commit)\",swift=\"\(BuildInfo.swift)\",kernel=\"\(ItemIndex.kernelISA)\"} 1"
        #expect(text.contains(line + "\n"), "\(text.split(separator: "\n").filter { $0.contains("build_info") })")
        #expect(["avx2", "scalar"].contains(BuildInfo.kernel))
        #expect(!BuildInfo.commit.isEmpty)
    }

    @Test func processMetricsAreThisProcess() throws {
        #if os(Linux)
        let p = try #require(ProcessMetrics.read())
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let rssLine = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        let rssKB = try #require(Double(rssLine.split(separator: " ").dropFirst().first ?? ""))
        #expect(abs(p.residentBytes - rssKB * 1024) < 256 * 1024 * 1024)
        #expect(p.virtualBytes >= p.residentBytes)
        #expect(p.openFDs >= 3)
        #expect((p.maxFDs ?? 0) >= p.openFDs)
        let now = Date().timeIntervalSince1970
        #expect(p.startTimeSeconds <= now + 1 && p.startTimeSeconds > now - 86_400)
        #expect(p.cpuSeconds > 0)
        let text = p.render()
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                     "process_open_fds", "process_max_fds", "process_start_time_seconds"] {
            #expect(text.contains("\n\(name) "), "\(name)")
        }
        #expect(Self.types(text)["process_cpu_seconds_total"] == "counter")
        #endif
    }

    @Test func kernelEnvironmentIsCheckedByName() {
        #expect(BuildInfo.kernelEnvironmentProblem([:]) == nil)
        #expect(BuildInfo.kernelEnvironmentProblem(["PRERANK_KERNEL": "auto"]) == nil)
        #expect(BuildInfo.kernelEnvironmentProblem(["PRERANK_KERNEL": "scalar"]) == nil)
        let bad = BuildInfo.kernelEnvironmentProblem(["PRERANK_KERNEL": "sse9"])
        #expect(bad?.contains("PRERANK_KERNEL=sse9") == true && bad?.contains("\n") == false)
    }
}
