import Dispatch
import Foundation
import StrictJSON
import Synchronization

/// What a connection reports to its server: counters and admission bookkeeping.
struct ConnectionObserver: Sendable {
    var timedOut: @Sendable (ConnectionStateMachine.TimeoutKind) -> Void = { _ in }
    /// The transport answered `status` itself (framing refusal, limit, timeout, budget).
    var refused: @Sendable (Int) -> Void = { _ in }
    var closed: @Sendable (Connection) -> Void = { _ in }
}

/// One client connection: the Dispatch and socket shell around `ConnectionStateMachine`.
///
/// It reads, feeds the machine events (bytes, EOF, write drained, timer, job finished) and
/// carries out the actions it returns (read or stop, write, arm the deadline, dispatch, linger,
/// close). All decisions — framing, deadlines, keep-alive, refusals — are the machine's.
///
/// Thread safety: every mutable field is touched only on `queue` (a serial queue per
/// connection), which is why the class may be `@unchecked Sendable`; `reusableSince` is atomic
/// because the listener reads it for admission. Sources (read, write, timer) all target
/// `queue`. The fd is closed only after every source's cancel handler has run (libdispatch on
/// Linux can otherwise reuse the fd under a live source: swift-corelibs-libdispatch #833, #949).
final class Connection: @unchecked Sendable {
    let fd: Int32
    let queue: DispatchQueue
    /// Monotonic ns since which the connection has had no request in progress; 0 while it has one.
    let reusableSince = Atomic<UInt64>(0)
    private let io: SocketIO
    private let limits: ServerLimits
    private let handler: HTTPHandler
    private let budget: MemoryBudget
    private let observer: ConnectionObserver
    private var machine: ConnectionStateMachine

    /// Output not yet written: whole segments (a head, a body); `outputOffset` into the first.
    private var output: [[UInt8]] = []
    private var outputOffset = 0
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var timer: DispatchSourceTimer?
    private var writeArmed = false
    private var readPaused = false
    private var closed = false
    private var pendingCancels = 0

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    init(fd: Int32, io: SocketIO, limits: ServerLimits, budget: MemoryBudget, handler: HTTPHandler, observer: ConnectionObserver) {
        self.fd = fd
        self.io = io
        self.limits = limits
        self.budget = budget
        self.handler = handler
        self.observer = observer
        let now = Self.now()
        self.machine = ConnectionStateMachine(now: now, config: .init(limits: limits), budget: budget)
        self.reusableSince.store(now, ordering: .relaxed)
        self.queue = DispatchQueue(label: "prerank.conn.\(fd)", target: .global(qos: .userInitiated))
    }

    func start() {
        queue.async { [self] in
            let read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            read.setEventHandler { [weak self] in self?.onReadable() }
            read.setCancelHandler { [self] in cancelled() }
            let write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
            write.setEventHandler { [weak self] in self?.onWritable() }
            write.setCancelHandler { [self] in cancelled() }
            let t = DispatchSource.makeTimerSource(queue: queue)
            t.setEventHandler { [weak self] in self?.event { m, now in m.timerFired(now: now) } }
            t.setCancelHandler { [self] in cancelled() }
            pendingCancels = 3
            readSource = read
            writeSource = write
            timer = t
            t.schedule(deadline: .distantFuture)
            t.resume()
            read.resume()
            event { m, _ in m.start() }
        }
    }

    /// Graceful shutdown: close now if no request is in progress, else after its answer.
    func beginDrain() {
        queue.async { [self] in event { m, now in m.drain(now: now) } }
    }

    /// Admission at `maxConnections`: close if still reusable. `done(true)` when it closed.
    func evict(done: @escaping @Sendable (Bool) -> Void) {
        queue.async { [self] in
            guard !closed else { done(true); return }
            event { m, now in m.evict(now: now) }
            done(closed)
        }
    }

    /// Shutdown deadline passed: close whatever the state.
    func forceClose() {
        queue.async { [self] in event { m, _ in m.transportFailed() } }
    }

    // MARK: events and actions

    private func event(_ body: (inout ConnectionStateMachine, UInt64) -> [ConnectionStateMachine.Action]) {
        guard !closed else { return }
        let actions = body(&machine, Self.now())
        perform(actions)
    }

    /// Carries out actions in order. Writes are only queued here and flushed after the whole
    /// list, so that the events a flush feeds back (`writeCompleted`) never interleave with the
    /// rest of a list computed for an earlier state.
    private func perform(_ actions: [ConnectionStateMachine.Action]) {
        var wrote = false
        for action in actions {
            switch action {
            case .readMore: resumeReading()
            case .stopReading: pauseReading()
            case .armDeadline(let t): timer?.schedule(deadline: DispatchTime(uptimeNanoseconds: t), leeway: .milliseconds(5))
            case .disarmDeadline: timer?.schedule(deadline: .distantFuture)
            case .dispatch(let head, let body, let reservation): dispatch(head, body, reservation: reservation)
            case .sendContinue:
                output.append(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
                wrote = true
            case .send(let out):
                if let refusal = out.refusal { observer.refused(refusal.status) }
                output.append(contentsOf: ResponseSerializer.segments(out))
                wrote = true
            case .shutdownWriteAndLinger: io.shutdown()
            case .close: close()
            case .timedOut(let kind): observer.timedOut(kind)
            case .waitForBudget:
                queue.asyncAfter(deadline: .now() + .milliseconds(20)) { [weak self] in
                    self?.event { m, now in m.budgetRetry(now: now) }
                }
            }
        }
        reusableSince.store(closed ? 0 : machine.reusableSince ?? 0, ordering: .relaxed)
        if wrote && !closed { flush() }
    }

    // MARK: reading

    private func onReadable() {
        guard !closed else { return }
        withUnsafeTemporaryAllocation(byteCount: 64 * 1024, alignment: 16) { chunk in
            while !closed && !readPaused {
                switch io.read(into: chunk) {
                case .bytes(let n):
                    let bytes = UnsafeRawBufferPointer(rebasing: chunk[0..<n])
                    event { m, now in m.bytesRead(bytes, now: now) }
                case .wouldBlock:
                    return
                case .closed:
                    event { m, now in m.peerHalfClosed(now: now) }
                    // EOF stays readable: stop the source whatever the machine decided.
                    pauseReading()
                    return
                case .failed:
                    event { m, _ in m.transportFailed() }
                    return
                }
            }
        }
        if !closed && io.wantsWritable { armWrite() }
    }

    private func pauseReading() {
        guard !readPaused, !closed, let readSource else { return }
        readPaused = true
        readSource.suspend()
    }

    private func resumeReading() {
        guard readPaused, !closed, let readSource else { return }
        readPaused = false
        readSource.resume()
    }

    // MARK: the application

    /// Hands a framed request to the application. A gzip body is inflated on a global queue,
    /// not this connection's I/O queue, within the memory budget. The answer always hops back
    /// to `queue` asynchronously: feeding `jobFinished` from inside `perform` would interleave.
    /// `reservation`, the budget held for `body`, is released when the application answers —
    /// not when the connection closes, which may happen first while the application still
    /// holds the body.
    private func dispatch(_ head: HTTPParser.Head, _ body: [UInt8], reservation: Int) {
        let receivedAt = Self.now()
        let encoding = head.headers.first { $0.name.caseInsensitiveEquals("content-encoding") }?.value.lowercased()
        let acceptsGzip = Self.acceptsGzip(head.headers.first { $0.name.caseInsensitiveEquals("accept-encoding") }?.value)
        let (path, query) = Self.splitTarget(head.target)
        let threshold = limits.gzipThreshold
        let handler = self.handler
        let budget = self.budget
        let finish: @Sendable (HTTPResponse) -> Void = { [weak self] response in
            budget.release(reservation)
            let ready = Gzip.encode(response, acceptsGzip: acceptsGzip, threshold: threshold)
            guard let self else { return }
            self.queue.async { self.event { m, now in m.jobFinished(ready, now: now) } }
        }
        @Sendable func request(_ body: [UInt8]) -> HTTPRequest {
            HTTPRequest(method: head.method, path: path, query: query, minorVersion: head.minorVersion,
                        headers: head.headers, body: body, receivedAt: receivedAt)
        }
        guard let encoding, encoding != "identity" else {
            handler.handle(request(body), respond: finish)
            return
        }
        guard encoding == "gzip" || encoding == "x-gzip" else {
            let error = APIError(status: 415, code: "unsupported_encoding", message: "Content-Encoding \(encoding) is not supported (gzip is)")
            handler.transportRefused(status: 415)
            finish(.error(error))
            return
        }
        let limit = limits.maxInflatedBodyBytes
        DispatchQueue.global(qos: .userInitiated).async {
            var granted = 0
            let inflated: [UInt8]
            do throws(Gzip.Failure) {
                inflated = try Gzip.inflate(body, limit: limit) { n in
                    guard budget.reserve(n) else { return false }
                    granted += n
                    return true
                }
            } catch {
                budget.release(granted)
                let e: APIError
                switch error {
                case .tooLarge: e = APIError(status: 413, code: "body_too_large", message: "gzip body inflates past \(limit) bytes")
                case .overBudget: e = APIError(status: 503, code: "server_busy", message: "request buffers are full; retry shortly", headers: [("Retry-After", "1")])
                case .corrupt: e = APIError(status: 400, code: "bad_encoding", message: "gzip body is corrupt")
                }
                handler.transportRefused(status: e.status)
                finish(.error(e))
                return
            }
            let held = granted
            handler.handle(request(inflated)) { response in
                budget.release(held)
                finish(response)
            }
        }
    }

    // MARK: writing

    private func onWritable() {
        flush()
        if !closed && io.wantsWritable { onReadable() }
    }

    private func flush() {
        guard !closed else { return }
        guard !output.isEmpty else {
            disarmWrite()
            return
        }
        while !output.isEmpty {
            let result: IOResult
            if output.count >= 2 {
                result = output[0].withUnsafeBytes { a in
                    output[1].withUnsafeBytes { b in io.write(UnsafeRawBufferPointer(rebasing: a[outputOffset...]), b) }
                }
            } else {
                result = output[0].withUnsafeBytes { io.write(UnsafeRawBufferPointer(rebasing: $0[outputOffset...])) }
            }
            switch result {
            case .bytes(var n):
                while n > 0, !output.isEmpty {
                    let left = output[0].count - outputOffset
                    if n >= left {
                        n -= left
                        output.removeFirst()
                        outputOffset = 0
                    } else {
                        outputOffset += n
                        n = 0
                    }
                }
            case .wouldBlock:
                armWrite()
                return
            case .closed, .failed:
                event { m, _ in m.transportFailed() }
                return
            }
        }
        outputOffset = 0
        disarmWrite()
        event { m, now in m.writeCompleted(now: now) }
    }

    private func armWrite() {
        guard !writeArmed, !closed, let writeSource else { return }
        writeArmed = true
        writeSource.resume()
    }

    private func disarmWrite() {
        guard writeArmed, !closed, let writeSource else { return }
        writeArmed = false
        writeSource.suspend()
    }

    // MARK: closing

    private func close() {
        guard !closed else { return }
        closed = true
        reusableSince.store(0, ordering: .relaxed)
        output = []
        io.shutdown()
        // A suspended source must be resumed before it can be cancelled (and its handler run).
        if readPaused { readPaused = false; readSource?.resume() }
        if !writeArmed { writeArmed = true; writeSource?.resume() }
        readSource?.cancel()
        writeSource?.cancel()
        timer?.cancel()
    }

    private func cancelled() {
        pendingCancels -= 1
        if pendingCancels == 0 {
            Glibc.close(fd)
            readSource = nil
            writeSource = nil
            timer = nil
            observer.closed(self)
        }
    }

    // MARK: helpers

    static func splitTarget(_ target: String) -> (String, String) {
        guard let q = target.firstIndex(of: "?") else { return (target, "") }
        return (String(target[..<q]), String(target[target.index(after: q)...]))
    }

    static func acceptsGzip(_ value: String?) -> Bool {
        guard let value else { return false }
        for part in value.lowercased().split(separator: ",") {
            let fields = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let coding = fields.first, coding == "gzip" || coding == "x-gzip" else { continue }
            if let q = fields.dropFirst().first(where: { $0.hasPrefix("q=") }), Double(q.dropFirst(2)) == 0 { return false }
            return true
        }
        return false
    }
}
