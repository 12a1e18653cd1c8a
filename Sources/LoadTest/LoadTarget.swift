/// Where the load goes: an `http://host:port/path` URL, restricted to this machine.
///
/// This workplace forbids traffic to other hosts, so only `127.0.0.1`, `localhost` and `::1`
/// are accepted unless `allowRemote` is set (`--allow-remote`).
public struct LoadTarget: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public var path: String

    public static let localHosts: Set<String> = ["127.0.0.1", "localhost", "::1"]

    public init(host: String, port: UInt16, path: String) {
        self.host = host
        self.port = port
        self.path = path
    }

    /// Parses `http://host[:port][/path]` (default port 80, default path `/prerank`).
    public static func parse(_ url: String, allowRemote: Bool = false) throws(LoadTestError) -> LoadTarget {
        guard url.hasPrefix("http://") else {
            throw LoadTestError("--url must start with http:// (the load generator speaks plain HTTP/1.1): \(url)")
        }
        let rest = url.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = String(rest[..<slash])
        let path = slash == rest.endIndex ? "/prerank" : String(rest[slash...])
        var host = authority
        var port: UInt16 = 80
        if authority.hasPrefix("[") {  // [::1]:8080
            guard let close = authority.firstIndex(of: "]") else { throw LoadTestError("bad IPv6 host in \(url)") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = UInt16(after.dropFirst()), p > 0 else { throw LoadTestError("bad port in \(url)") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = UInt16(authority[authority.index(after: colon)...]), p > 0 else { throw LoadTestError("bad port in \(url)") }
            port = p
        }
        guard !host.isEmpty else { throw LoadTestError("no host in \(url)") }
        if !allowRemote && !localHosts.contains(host.lowercased()) {
            throw LoadTestError("refusing to send load to \(host): only 127.0.0.1, localhost and ::1 are allowed (--allow-remote overrides)")
        }
        return LoadTarget(host: host, port: port, path: path)
    }

    /// The `Host` header value.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }
}

/// A load-test failure with a message for the command line.
public struct LoadTestError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
