import Dispatch
import Foundation

/// One client connection: reads, frames requests with `HTTPParser`, hands each to the
/// application, writes responses in order, and enforces the timeouts.
///
/// Thread safety: every mutable field is touched only on `queue` (a serial queue per
/// connection), which is why the class may be `@unchecked Sendable`. Sources (read, write,
/// timer) all target `queue`. The fd is closed only after every source's cancel handler has run
/// (libdispatch on Linux can otherwise reuse the fd under a live source: swift-corelibs-
/// libdispatch #833, #949).
final class Connection: @unchecked Sendable {
    let fd: Int32
    let queue: DispatchQueue
    private let io: SocketIO
    private let limits: ServerLimits
    private let parser: HTTPParser
    private let handler: HTTPHandler
    private let onClose: @Sendable (Connection) -> Void

    private var buffer: [UInt8] = []
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var writeArmed = false
    private var readPaused = false
    private var timer: DispatchSourceTimer?
    private var inFlight = false
    private var closeAfterFlush = false
    private var draining = false
    private var peerClosed = false
    private var closed = false
    private var sentContinue = false
    private var pendingCancels = 0
    private var requestStarted: DispatchTime?
    private let stats: (@Sendable (_ kind: String) -> Void)

    init(fd: Int32, io: SocketIO, limits: ServerLimits, handler: HTTPHandler,
         stats: @escaping @Sendable (_ kind: String) -> Void, onClose: @escaping @Sendable (Connection) -> Void) {
        self.fd = fd
        self.io = io
        self.limits = limits
        self.parser = HTTPParser(limits: .init(maxHeaderBytes: limits.maxHeaderBytes, maxBodyBytes: limits.maxBodyBytes))
        self.handler = handler
        self.stats = stats
        self.onClose = onClose
        self.queue = DispatchQueue(label: "prerank.conn.\(fd)", target: .global(qos: .userInitiated))
    }

    func start() {
        queue.async { [self] in
            let read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            read.setEventHandler { [weak self] in self?.onReadable() }
            read.setCancelHandler { [self] in cancelled() }
            let write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
            write.setEventHandler { [weak self] in self?.flush() }
            write.setCancelHandler { [self] in cancelled() }
            let t = DispatchSource.makeTimerSource(queue: queue)
            t.setEventHandler { [weak self] in self?.timedOut() }
            t.setCancelHandler { [self] in cancelled() }
            pendingCancels = 3
            readSource = read
            writeSource = write
            timer = t
            arm(limits.idleTimeout)
            t.resume()
            read.resume()
        }
    }

    /// Stop after the current request: answer it with `Connection: close`, close if idle.
    func beginDrain() {
        queue.async { [self] in
            draining = true
            if !inFlight && outputOffset >= output.count { close() }
        }
    }

    // MARK: reading

    private func onReadable() {
        guard !closed else { return }
        var gotEOF = false
        withUnsafeTemporaryAllocation(byteCount: 64 * 1024, alignment: 16) { chunk in
            loop: while true {
                switch io.read(into: chunk) {
                case .bytes(let n):
                    buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
                    if buffer.count > limits.maxHeaderBytes + limits.maxBodyBytes + 65536 { pauseReading(); break loop }
                case .wouldBlock: break loop
                case .closed, .failed: gotEOF = true; break loop
                }
            }
        }
        if io.wantsWritable { armWrite() }
        if gotEOF {
            peerClosed = true
            pauseReading()
            // Answer whatever complete requests are buffered, then close (see `process`); with
            // a request in flight, `finish` carries on from there.
            process()
            return
        }
        process()
    }

    private func pauseReading() {
        guard !readPaused, let readSource else { return }
        readPaused = true
        readSource.suspend()
    }

    private func resumeReading() {
        guard readPaused, !peerClosed, let readSource else { return }
        readPaused = false
        readSource.resume()
    }

    /// Frames and dispatches the next buffered request, one at a time (pipelining in order).
    private func process() {
        guard !closed, !inFlight, !closeAfterFlush else { return }
        let outcome = buffer.withUnsafeBufferPointer { parser.parse($0) }
        switch outcome {
        case .incomplete(let head):
            if peerClosed {
                // A half-closed client sends nothing more: every complete request it pipelined
                // has been answered, and a partial one never will be. Close once the answers are out.
                closeAfterFlush = true
                flush()
                return
            }
            if let head, head.expectContinue, !sentContinue {
                sentContinue = true
                enqueue(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
                flush()
            }
            if buffer.isEmpty {
                requestStarted = nil
                arm(limits.idleTimeout)
            } else if head == nil {
                if requestStarted == nil { requestStarted = .now(); arm(limits.headerTimeout) }
            } else {
                arm(limits.bodyTimeout)
            }
            if buffer.count < limits.maxHeaderBytes + limits.maxBodyBytes { resumeReading() }
        case .failure(let status, let message):
            stats("protocol_error")
            respondAndClose(status: status, code: status == 413 ? "body_too_large" : status == 431 ? "header_too_large" : "bad_request",
                            message: message)
        case .request(let head, var body, let consumed):
            buffer.removeFirst(consumed)
            sentContinue = false
            requestStarted = nil
            let keepAlive = wantsKeepAlive(head)
            if let encoding = header(head, "content-encoding")?.lowercased(), encoding != "identity" {
                guard encoding == "gzip" || encoding == "x-gzip" else {
                    respondAndClose(status: 415, code: "unsupported_encoding", message: "Content-Encoding \(encoding) is not supported (gzip is)")
                    return
                }
                do {
                    body = try Gzip.inflate(body, limit: limits.maxInflatedBodyBytes)
                } catch .tooLarge {
                    respondAndClose(status: 413, code: "body_too_large", message: "gzip body inflates past \(limits.maxInflatedBodyBytes) bytes")
                    return
                } catch {
                    respondAndClose(status: 400, code: "bad_encoding", message: "gzip body is corrupt")
                    return
                }
            }
            let (path, query) = Self.splitTarget(head.target)
            let request = HTTPRequest(method: head.method, path: path, query: query, minorVersion: head.minorVersion,
                                      headers: head.headers, body: body, receivedAt: DispatchTime.now().uptimeNanoseconds)
            inFlight = true
            timer?.schedule(deadline: .distantFuture)
            let acceptsGzip = Self.acceptsGzip(header(head, "accept-encoding"))
            let isHead = head.method == "HEAD"
            let minor = head.minorVersion
            let threshold = limits.gzipThreshold
            handler.handle(request) { [weak self] response in
                var response = response
                if acceptsGzip && response.body.count >= threshold
                    && !response.headers.contains(where: { $0.name.caseInsensitiveEquals("content-encoding") }) {
                    response.body = Gzip.deflate(response.body)
                    response.headers.append(("Content-Encoding", "gzip"))
                    response.headers.append(("Vary", "Accept-Encoding"))
                }
                let ready = response
                guard let self else { return }
                self.queue.async { self.finish(ready, keepAlive: keepAlive, minor: minor, isHead: isHead) }
            }
        }
    }

    private func finish(_ response: HTTPResponse, keepAlive: Bool, minor: Int, isHead: Bool) {
        guard !closed else { return }
        inFlight = false
        // The framing of this request was sound (the parser accepted it), so even an error answer
        // may keep the connection; only the client or a drain end it. After the client's EOF
        // (a half-close) the requests it pipelined before it are still answered: `process()`
        // closes once none is left.
        let keep = keepAlive && !draining
        enqueue(Self.serialize(response, keepAlive: keep, minor: minor, isHead: isHead))
        if !keep { closeAfterFlush = true }
        flush()
        if !closeAfterFlush { process() }
    }

    private func respondAndClose(status: Int, code: String, message: String) {
        let error = APIError(status: status, code: code, message: message)
        enqueue(Self.serialize(.error(error), keepAlive: false, minor: 1, isHead: false))
        closeAfterFlush = true
        pauseReading()
        flush()
    }

    // MARK: writing

    private func enqueue(_ bytes: [UInt8]) {
        if outputOffset >= output.count {
            output = bytes
            outputOffset = 0
        } else {
            output.append(contentsOf: bytes)
        }
    }

    private func flush() {
        guard !closed else { return }
        while outputOffset < output.count {
            let result = output.withUnsafeBytes { raw in
                io.write(UnsafeRawBufferPointer(rebasing: raw[outputOffset...]))
            }
            switch result {
            case .bytes(let n):
                outputOffset += n
                if !inFlight { arm(limits.idleTimeout) }   // progress resets the slow-reader clock
            case .wouldBlock:
                armWrite()
                return
            case .closed, .failed:
                close()
                return
            }
        }
        output = []
        outputOffset = 0
        disarmWrite()
        if closeAfterFlush || (draining && !inFlight) {
            close()
        } else if io.wantsWritable {
            armWrite()
        }
    }

    private func armWrite() {
        guard !writeArmed, let writeSource else { return }
        writeArmed = true
        writeSource.resume()
    }

    private func disarmWrite() {
        guard writeArmed, let writeSource else { return }
        writeArmed = false
        writeSource.suspend()
    }

    // MARK: timers and closing

    private func arm(_ seconds: Double) {
        timer?.schedule(deadline: .now() + seconds)
    }

    private func timedOut() {
        guard !closed, !inFlight else { return }
        stats("timeout")
        if outputOffset < output.count || buffer.isEmpty {
            close()  // idle keep-alive, or a reader that stopped taking bytes
        } else {
            respondAndClose(status: 408, code: "timeout", message: "request not received in time")
            // If even the 408 cannot be written, the next timeout closes the connection.
            arm(1)
            closeAfterFlush = true
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
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
            onClose(self)
        }
    }

    // MARK: helpers

    private func header(_ head: HTTPParser.Head, _ name: String) -> String? {
        head.headers.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    private func wantsKeepAlive(_ head: HTTPParser.Head) -> Bool {
        let tokens = head.headers.filter { $0.name.caseInsensitiveEquals("connection") }
            .flatMap { $0.value.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if tokens.contains("close") { return false }
        return head.minorVersion >= 1 || tokens.contains("keep-alive")
    }

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

    static func serialize(_ r: HTTPResponse, keepAlive: Bool, minor: Int, isHead: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(r.status) \(HTTPResponse.reason(r.status))\r\n"
        for (name, value) in r.headers where !name.caseInsensitiveEquals("content-length") && !name.caseInsensitiveEquals("connection") {
            head += "\(name): \(value)\r\n"
        }
        head += "Content-Length: \(r.body.count)\r\n"
        if !keepAlive { head += "Connection: close\r\n" } else if minor == 0 { head += "Connection: keep-alive\r\n" }
        head += "\r\n"
        var out = Array(head.utf8)
        if !isHead { out.append(contentsOf: r.body) }
        return out
    }
}
