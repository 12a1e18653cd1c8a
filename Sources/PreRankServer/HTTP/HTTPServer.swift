import Dispatch
import Foundation
import StrictJSON
import Synchronization

/// Why the server could not start.
public struct ServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// An HTTP/1.1 server on raw POSIX sockets driven by DispatchSources.
///
/// The listening socket is non-blocking; an accept source drains `accept` until EAGAIN and
/// hands each socket to a `Connection` with its own serial queue. On EMFILE/ENFILE the accept
/// source is suspended for 50 ms instead of spinning on a readable listener.
///
/// Admission at `maxConnections` is fair, like nginx's reusable-connection drain: the
/// connection that has been reusable longest (no request in progress: waiting for its first
/// byte or idle between requests) is closed to make room, so silent sockets cannot lock real
/// clients out. A connection in the middle of a request is never chosen; only when none is
/// reusable is the new one answered 503 + Retry-After.
public final class HTTPServer: @unchecked Sendable {
    // `listenFD`, `acceptSource`, `connections` and `acceptPaused` are confined to `listenQueue`;
    // stats are behind a mutex (read from the metrics endpoint's thread).
    private let host: String
    private let requestedPort: Int
    private let limits: ServerLimits
    private let tls: TLSContext?
    private let handler: HTTPHandler
    private let listenQueue = DispatchQueue(label: "prerank.listen", qos: .userInitiated)
    private var listenFD: Int32 = -1
    private var acceptSource: DispatchSourceRead?
    private var acceptPaused = false
    private var connections: [ObjectIdentifier: Connection] = [:]
    /// Connections asked to close for admission, not yet gone: they no longer count.
    private var evicting: Set<ObjectIdentifier> = []
    private var stopping = false
    private let budget: MemoryBudget
    private let counters = Mutex(HTTPServerStats())
    public private(set) var port: Int = 0

    public init(host: String, port: Int, limits: ServerLimits, tls: TLSContext? = nil, handler: HTTPHandler) {
        self.host = host
        self.requestedPort = port
        self.limits = limits
        self.tls = tls
        self.handler = handler
        self.budget = MemoryBudget(limits: limits)
    }

    public var stats: HTTPServerStats {
        var s = counters.withLock { $0 }
        s.bufferedBytes = budget.inUse
        s.bufferedBytesLimit = budget.limit
        return s
    }

    /// Binds, listens and starts accepting; returns the bound port (useful with port 0).
    @discardableResult
    public func start() throws -> Int {
        signal(SIGPIPE, SIG_IGN)
        guard (0...65535).contains(requestedPort) else { throw ServerError(description: "port \(requestedPort) is not 0...65535") }
        let ipv6 = host.contains(":")
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServerError(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var bound: Int32
        if ipv6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = in_port_t(UInt16(requestedPort).bigEndian)
            guard inet_pton(AF_INET6, host, &addr.sin6_addr) == 1 else { Glibc.close(fd); throw ServerError(description: "server.host \(host) is not an IPv6 address") }
            bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(requestedPort).bigEndian)
            let name = host == "localhost" ? "127.0.0.1" : host
            guard inet_pton(AF_INET, name, &addr.sin_addr) == 1 else { Glibc.close(fd); throw ServerError(description: "server.host \(host) is not an IPv4 address") }
            bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw ServerError(description: "cannot bind \(host):\(requestedPort): \(reason)")
        }
        guard listen(fd, 1024) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw ServerError(description: "listen: \(reason)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = withUnsafePointer(to: &storage) { p -> Int in
            if ipv6 { return Int(UInt16(bigEndian: p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port })) }
            return Int(UInt16(bigEndian: p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port }))
        }
        listenQueue.sync {
            listenFD = fd
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: listenQueue)
            source.setEventHandler { [weak self] in self?.acceptAll() }
            source.setCancelHandler { Glibc.close(fd) }
            acceptSource = source
            source.resume()
        }
        return port
    }

    private func acceptAll() {
        while !stopping {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // The listener stays readable: pause instead of spinning.
                    if !acceptPaused, let acceptSource {
                        acceptPaused = true
                        acceptSource.suspend()
                        listenQueue.asyncAfter(deadline: .now() + 0.05) { [weak self] in
                            guard let self, self.acceptPaused else { return }
                            self.acceptPaused = false
                            self.acceptSource?.resume()
                        }
                    }
                    return
                default: return  // EAGAIN: drained
                }
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if connections.count - evicting.count >= limits.maxConnections && !admitByEvicting() {
                counters.withLock { $0.rejected += 1 }
                handler.transportRefused(status: 503)
                let body = APIError(status: 503, code: "too_many_connections", message: "connection limit reached").jsonBody
                let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nDate: \(HTTPDate.now())\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                _ = text.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
                _ = Glibc.shutdown(fd, Int32(SHUT_WR))
                Glibc.close(fd)
                continue
            }
            let io: SocketIO
            if let tls {
                guard let t = TLSSocketIO(fd: fd, context: tls) else { Glibc.close(fd); continue }
                io = t
            } else {
                io = PlainSocketIO(fd: fd)
            }
            let observer = ConnectionObserver(
                timedOut: { [weak self] kind in
                    self?.counters.withLock {
                        $0.timeouts += 1
                        switch kind {
                        case .head: $0.headTimeouts += 1
                        case .body: $0.bodyTimeouts += 1
                        case .idle: $0.idleTimeouts += 1
                        case .write: $0.writeTimeouts += 1
                        }
                    }
                },
                refused: { [weak self] status in
                    guard let self else { return }
                    self.counters.withLock {
                        if status == 503 { $0.budgetRefusals += 1 } else if status != 408 { $0.protocolErrors += 1 }
                    }
                    self.handler.transportRefused(status: status)
                },
                closed: { [weak self] c in
                    guard let self else { return }
                    self.listenQueue.async {
                        self.connections[ObjectIdentifier(c)] = nil
                        self.evicting.remove(ObjectIdentifier(c))
                        self.counters.withLock { $0.open = self.connections.count }
                    }
                })
            let connection = Connection(fd: fd, io: io, limits: limits, budget: budget, handler: handler, observer: observer)
            connections[ObjectIdentifier(connection)] = connection
            counters.withLock {
                $0.accepted += 1
                $0.open = connections.count
            }
            connection.start()
        }
    }

    /// Asks the connection reusable longest to close; false when no connection is reusable.
    /// The new connection is admitted at once: the victim's slot is taken as freed (if it
    /// turned busy meanwhile it stays, and the limit is exceeded by one until it closes).
    private func admitByEvicting() -> Bool {
        var victim: Connection?
        var oldest = UInt64.max
        for (id, c) in connections where !evicting.contains(id) {
            let since = c.reusableSince.load(ordering: .relaxed)
            if since != 0 && since < oldest {
                oldest = since
                victim = c
            }
        }
        guard let victim else { return false }
        let id = ObjectIdentifier(victim)
        evicting.insert(id)
        counters.withLock { $0.evicted += 1 }
        victim.evict { [weak self] closed in
            guard !closed, let self else { return }
            self.listenQueue.async { self.evicting.remove(id) }
        }
        return true
    }

    /// Stops accepting, lets requests in flight finish (answered with `Connection: close`),
    /// closes idle connections, then calls `completion` (after at most `drainTimeout` seconds).
    public func shutdown(drainTimeout: Double = 10, completion: @escaping @Sendable () -> Void) {
        listenQueue.async { [self] in
            guard !stopping else { return }
            stopping = true
            if acceptPaused { acceptPaused = false; acceptSource?.resume() }
            acceptSource?.cancel()
            acceptSource = nil
            for c in connections.values { c.beginDrain() }
            pollDrain(deadline: DispatchTime.now() + drainTimeout, completion: completion)
        }
    }

    private func pollDrain(deadline: DispatchTime, completion: @escaping @Sendable () -> Void) {
        if connections.isEmpty || DispatchTime.now() >= deadline {
            for c in connections.values { c.forceClose() }
            completion()
            return
        }
        listenQueue.asyncAfter(deadline: .now() + 0.02) { [self] in pollDrain(deadline: deadline, completion: completion) }
    }
}
