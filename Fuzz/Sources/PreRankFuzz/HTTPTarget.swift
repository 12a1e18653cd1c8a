@testable import HTTPTransport
import PreRankServer
import StrictJSON

/// `http`: the connection byte stream through `ConnectionStateMachine` (and with it
/// `HTTPParser.scanHead`/`parseHead` and `ChunkedDecoder`), driven the way the Dispatch shell
/// (`Connection`) drives it: reads of fuzzer-chosen sizes, only while the machine wants to read,
/// pipelined requests, a clock the input advances (deadlines fire), the application answering
/// late or at once, writes completing late, half-closes, drains, and other connections taking
/// and giving back the shared memory budget.
///
/// The input is a little program (`Op`); one op can repeat a short pattern thousands of times,
/// so a few input bytes make a flood and a superlinear path shows within libFuzzer's lengths.
///
/// Checks after every event: bytes buffered by the connection stay within
/// head limit + pipeline limit + body limit + one read; the budget (a `CheckingBudget` given to
/// the machine through the `BufferBudget` protocol) holds exactly what this connection, the
/// application's job and the others reserved, never releases more than was reserved, and holds
/// nothing of the connection's after the close; every answer serialises to
/// well-formed HTTP/1.1 (status line, headers, one Content-Length equal to the body, a JSON
/// body on refusals); a dispatched body is within the body limit and its reservation. Work:
/// the machine's `headScanSteps` never exceeds the bytes received (each byte scanned once),
/// and at the end the CPU time the machine spent is at most `a + b·events + c·bytes`
/// (confirmed by a second run), so a quadratic path is a finding, not just a slow input.
enum HTTPTarget {
    static let name = "http"

    /// Thresholds of the work check, generous for a debug ASan build on a busy machine: a
    /// linear path stays far below them, a quadratic one over tens of KiB far above.
    static let workBaseNs: UInt64 = 30_000_000
    static let workPerEventNs: UInt64 = 300_000
    static let workPerByteNs: UInt64 = 5_000
    /// The most bytes one input may send (repeats are cut here), and the most reads of the
    /// program's size: past them reads are `maxRead` bytes, so an input costs at most a few
    /// thousand events and the target keeps hundreds of executions a second.
    static let maxStream = 128 << 10
    static let maxSmallReads = 2048
    static let readSizes = [1, 2, 3, 7, 16, 100, 1024, 4096]
    static let maxRead = 4096
    static let clockSteps: [UInt64] = [1_000_000, 100_000_000, 1_000_000_000, 2_000_000_000, 5_000_000_000,
                                       10_000_000_000, 60_000_000_000, 61_000_000_000]

    static func run(_ data: UnsafeRawBufferPointer) {
        var firstRun = Session(data)
        let first = firstRun.run()
        let allowed = workBaseNs + workPerEventNs * UInt64(first.events) + workPerByteNs * UInt64(first.bytes)
        guard first.cpuNs > allowed else { return }
        // Confirm on a second run: a preemption or a page-fault storm can slow one run.
        var secondRun = Session(data)
        let second = secondRun.run()
        Known.check(second.cpuNs <= allowed, Known.headQuadratic, name,
                    "the state machine spent \(second.cpuNs / 1_000_000) ms (and \(first.cpuNs / 1_000_000) ms) of CPU on \(second.bytes) bytes in \(second.events) events; the linear bound is \(allowed / 1_000_000) ms")
    }

    /// Refusals rendered as the server renders them (`PreRankApp.renderRefusal`): the SPEC's
    /// JSON error body, which the well-formedness check parses.
    static func render(_ refusal: TransportRefusal) -> HTTPResponse { .error(APIError(refusal)) }

    /// One run of the program against a fresh connection.
    struct Session {
        var r: FuzzReader
        var sm: ConnectionStateMachine
        let config: TransportLimits
        let budget: CheckingBudget
        var now: UInt64 = 1_000_000_000
        var reading = true
        var deadline: UInt64?
        var closed = false
        var peerClosed = false
        var writeShut = false
        var job: HTTPParser.Head?
        /// Budget bytes the dispatched body holds; the application (this target) releases them
        /// when it answers, as the shell does when the job is done.
        var jobReserved = 0
        var writePending = false
        var waitingForBudget = false
        var heldByOthers = 0
        var autoAnswer: Bool
        var autoWrite: Bool
        var queue: [UInt8] = []
        var queueStart = 0
        var readSize = 4096
        var reads = 0
        var streamBytes = 0
        var refused = false
        // Work accounting.
        var cpuNs: UInt64 = 0
        var events = 0
        var bytes = 0

        init(_ data: UnsafeRawBufferPointer) {
            r = FuzzReader(data)
            let c = r.byte()
            var config = TransportLimits()
            config.maxHeaderBytes = 512 << Int(c & 3)
            config.maxBodyBytes = 1024 << Int((c >> 2) & 3)
            config.pipelineBufferBytes = config.maxHeaderBytes + 1024
            config.lingerMaxBytes = 16384
            self.config = config
            budget = CheckingBudget(MemoryBudget(limit: config.maxBodyBytes * 2, inputHeadroom: Int(c >> 6) * 256))
            autoAnswer = c & 16 != 0
            autoWrite = c & 32 != 0
            sm = ConnectionStateMachine(now: now, limits: config, budget: budget)
        }

        mutating func run() -> (cpuNs: UInt64, events: Int, bytes: Int) {
            event { $0.start() }
            while !r.isAtEnd && !closed {
                step(r.byte())
                pump()
            }
            // The input is over: the client sends what is queued, everything is answered and
            // written, and time passes until the connection closes.
            autoAnswer = true
            autoWrite = true
            pump()
            var rounds = 0
            while !closed && rounds < 8 {
                rounds += 1
                if let d = deadline {
                    now = max(now, d)
                    event { [now] in $0.timerFired(now: now) }
                } else if !peerClosed {
                    peerClosed = true
                    queue = []
                    queueStart = 0
                    event { [now] in $0.peerHalfClosed(now: now) }
                } else {
                    break
                }
                pump()
            }
            if !closed { event { $0.transportFailed() } }
            releaseJob()
            require(budget.inUse == heldByOthers, name, "the budget holds \(budget.inUse - heldByOthers) bytes after the connection closed")
            return (cpuNs, events, bytes)
        }

        mutating func step(_ op: UInt8) {
            switch op % 10 {
            case 0, 1, 2, 3:
                send(r.take(Int(r.byte())))
            case 4:
                let count = 1 + r.u16()
                let pattern = r.take(1 + Int(r.byte() % 8))
                guard !pattern.isEmpty else { return }
                var out: [UInt8] = []
                out.reserveCapacity(min(count * pattern.count, maxStream))
                for _ in 0..<count where out.count < maxStream { out += pattern }
                send(out)
            case 5:
                now += clockSteps[Int(r.byte() % 8)]
                if let d = deadline, now >= d { event { [now] in $0.timerFired(now: now) } }
            case 6:
                answer(r.byte())
            case 7:
                if writePending { completeWrite() }
            case 8:
                switch r.byte() % 6 {
                case 0:
                    if !peerClosed {
                        peerClosed = true
                        queue = []
                        queueStart = 0
                        event { [now] in $0.peerHalfClosed(now: now) }
                    }
                case 1:
                    if waitingForBudget { waitingForBudget = false; event { [now] in $0.budgetRetry(now: now) } }
                case 2: event { [now] in $0.drain(now: now) }
                case 3: event { [now] in $0.evict(now: now) }
                case 4:
                    // Another connection takes part of the budget…
                    let n = min(Int(r.byte()) * 64, budget.limit - budget.inUse)
                    if n > 0, budget.reserve(n) { heldByOthers += n }
                default:
                    // …or gives it back.
                    if heldByOthers > 0 {
                        budget.release(heldByOthers)
                        heldByOthers = 0
                        if waitingForBudget { waitingForBudget = false; event { [now] in $0.budgetRetry(now: now) } }
                    }
                }
            default:
                readSize = HTTPTarget.readSizes[Int(r.byte() % 8)]
            }
        }

        mutating func send(_ bytes: [UInt8]) {
            guard !peerClosed else { return }
            let n = min(bytes.count, maxStream - streamBytes)
            guard n > 0 else { return }
            streamBytes += n
            queue += bytes[0..<n]
        }

        /// Delivers queued bytes while the machine wants to read; answers and writes at once when
        /// the program chose to.
        mutating func pump() {
            var progress = true
            while progress && !closed {
                progress = false
                if reading && queueStart < queue.count {
                    reads += 1
                    let n = min(reads > maxSmallReads ? maxRead : readSize, queue.count - queueStart)
                    let chunk = Array(queue[queueStart..<(queueStart + n)])
                    queueStart += n
                    if queueStart == queue.count { queue = []; queueStart = 0 }
                    bytes += n
                    event { [now] m in chunk.withUnsafeBytes { m.bytesRead($0, now: now) } }
                    progress = true
                }
                if autoAnswer && job != nil && !closed { answer(0); progress = true }
                if autoWrite && writePending && !closed { completeWrite(); progress = true }
            }
        }

        mutating func answer(_ choice: UInt8) {
            guard job != nil, !closed else { return }
            job = nil
            let statuses = [200, 200, 404, 503]
            let response = HTTPResponse.json(statuses[Int(choice % 4)], [UInt8](repeating: UInt8(ascii: "x"), count: Int(choice >> 2) * 8))
            event { [now] in $0.jobFinished(response, now: now) }
            releaseJob()
        }

        /// The application is done with the body: its reservation goes back to the budget.
        mutating func releaseJob() {
            if jobReserved > 0 { budget.release(jobReserved) }
            jobReserved = 0
        }

        mutating func completeWrite() {
            writePending = false
            event { [now] in $0.writeCompleted(now: now) }
        }

        /// Runs one event on the machine (timed), carries out its actions, checks the invariants.
        mutating func event(_ body: (inout ConnectionStateMachine) -> [ConnectionStateMachine.Action]) {
            guard !closed else { return }
            events += 1
            let t0 = threadCPUNanoseconds()
            let actions = body(&sm)
            cpuNs += threadCPUNanoseconds() - t0
            for action in actions { apply(action) }
            checkInvariants()
        }

        mutating func apply(_ action: ConnectionStateMachine.Action) {
            switch action {
            case .readMore: reading = true
            case .stopReading: reading = false
            case .armDeadline(let d): deadline = d
            case .disarmDeadline: deadline = nil
            case .dispatch(let head, let body, let reservation):
                require(job == nil && jobReserved == 0, name, "a second request dispatched before the first was answered")
                require(reservation >= body.count, name, "a body of \(body.count) bytes dispatched with a reservation of \(reservation)")
                jobReserved = reservation
                require(!refused, name, "a request dispatched after a refusal")
                require(body.count <= config.maxBodyBytes, name, "a body of \(body.count) bytes past the limit \(config.maxBodyBytes)")
                if let length = head.contentLength, !head.chunked { require(body.count == length, name, "body of \(body.count) bytes for Content-Length \(length)") }
                job = head
            case .sendContinue:
                require(!writeShut, name, "100 Continue after the write side was shut")
            case .send(let out):
                require(!writeShut, name, "an answer after the write side was shut")
                require(!writePending, name, "an answer while the previous one is still being written")
                checkWellFormed(out)
                if out.refusal != nil { refused = true }
                writePending = true
            case .shutdownWriteAndLinger:
                writeShut = true
            case .close:
                closed = true
                reading = false
            case .timedOut:
                break
            case .waitForBudget:
                waitingForBudget = true
            }
        }

        func checkInvariants() {
            let bound = max(config.maxHeaderBytes, config.pipelineBufferBytes) + config.maxBodyBytes + maxRead
            if sm.bufferedBytes > bound {
                let id = sm.stateName == "readingHead" || sm.stateName == "awaitingRequest" ? Known.headBuffer : "buffered-bytes"
                Known.check(false, id, name, "\(sm.bufferedBytes) bytes buffered in \(sm.stateName), bound \(bound)")
            }
            require(sm.reserved <= bound, name, "reserved \(sm.reserved) past the bound \(bound)")
            require(budget.inUse == heldByOthers + sm.reserved + jobReserved, name,
                    "the budget holds \(budget.inUse), the connection \(sm.reserved), the job \(jobReserved) and the others \(heldByOthers)")
            Known.check(sm.headScanSteps <= bytes, Known.headQuadratic, name,
                        "the head scanner took \(sm.headScanSteps) steps over \(bytes) bytes received")
            if closed { require(sm.isClosed && sm.bufferedBytes == 0, name, "closed with \(sm.bufferedBytes) bytes buffered") }
        }

        /// The serialised answer must be HTTP/1.1 a client can frame.
        func checkWellFormed(_ out: ConnectionStateMachine.Outbound) {
            let segments = ResponseSerializer.segments(out, render: HTTPTarget.render)
            let response = out.response(rendering: HTTPTarget.render)
            let head = segments[0]
            let body = segments.count > 1 ? segments[1] : []
            require(head.count >= 4 && Array(head.suffix(4)) == Array("\r\n\r\n".utf8), name, "the head does not end in CRLFCRLF")
            guard let text = String(validating: head, as: UTF8.self) else { FuzzFailure.fail(name, "the head is not UTF-8") }
            var lines = text.utf8.split(separator: 10, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            lines.removeLast(2)  // after the final CRLF and the blank line
            require(lines.allSatisfy { $0.hasSuffix("\r") }, name, "a head line not ended by CRLF")
            lines = lines.map { String($0.dropLast()) }
            let status = lines[0].split(separator: " ", maxSplits: 2)
            require(status.count == 3 && status[0] == "HTTP/1.1" && status[1].count == 3 && status[1].allSatisfy(\.isNumber)
                    && Int(status[1]) == out.status, name, "bad status line \(lines[0])")
            var lengths: [Int] = []
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { FuzzFailure.fail(name, "header line without a colon: \(line)") }
                let field = line[..<colon]
                require(!field.isEmpty && field.allSatisfy { HTTPParser.isTokenChar($0) }, name, "bad header name in \(line)")
                require(!line.utf8.contains(0) && !line.utf8.contains(13), name, "CR or NUL in a header line")
                if field.lowercased() == "content-length" { lengths.append(Int(line[line.index(after: colon)...].trimmingCharacters(in: [" "])) ?? -1) }
            }
            require(lengths.count == 1 && lengths[0] == response.body.count, name, "Content-Length \(lengths) for a body of \(response.body.count)")
            require(out.isHead ? body.isEmpty : body == response.body, name, "the body segment is not the body")
            if out.refusal != nil {
                require((400...599).contains(out.status) && !out.keepAlive, name, "a refusal with status \(out.status), keep-alive \(out.keepAlive)")
                require(ReferenceJSON.isValid(response.body), name, "a refusal body that is not JSON")
            }
        }
    }
}

/// The budget given to the machine under test: a real `MemoryBudget` (its limit and headroom
/// decide), with every call checked: nothing negative, never more released than is held.
final class CheckingBudget: BufferBudget {
    let inner: MemoryBudget
    init(_ inner: MemoryBudget) { self.inner = inner }

    var limit: Int { inner.limit }
    var inUse: Int { inner.inUse }

    func reserve(_ bytes: Int) -> Bool {
        require(bytes >= 0, HTTPTarget.name, "reserve(\(bytes))")
        return inner.reserve(bytes)
    }

    func reserveInput(_ bytes: Int) -> Bool {
        require(bytes >= 0, HTTPTarget.name, "reserveInput(\(bytes))")
        return inner.reserveInput(bytes)
    }

    func release(_ bytes: Int) {
        require(bytes >= 0 && bytes <= inner.inUse, HTTPTarget.name, "release(\(bytes)) with \(inner.inUse) held")
        inner.release(bytes)
    }
}
