import Foundation

/// Framing and budget bookkeeping of `ConnectionStateMachine`: turning buffered bytes into
/// requests, refusals and closes, and keeping every buffered byte reserved in the budget.
extension ConnectionStateMachine {
    /// Frames what is buffered, as far as the state allows.
    mutating func process(now: UInt64, _ actions: inout [Action]) {
        while true {
            switch state {
            case .awaitingRequest(_, let deadline, let kind):
                guard !inbound.isEmpty else { return }
                // A request begins. The first head is due from accept; a keep-alive one from its first byte.
                state = .readingHead(deadline: kind == .head ? deadline : now + limits.headerTimeout,
                                     scanner: HeadScanner(maxHeaderBytes: limits.maxHeaderBytes))
            case .readingHead(let deadline, var scanner):
                let before = scanner.scanned
                let scan = inbound.withUnsafeBytes { scanner.scan($0) }
                headScanSteps += scanner.scanned - before
                switch scan {
                case .incomplete:
                    state = .readingHead(deadline: deadline, scanner: scanner)
                    return
                case .failure(let f):
                    refuse(.malformed(f), now: now, &actions)
                    return
                case .complete(let end):
                    let start = scanner.requestStart ?? 0
                    let parsed = inbound.withUnsafeBufferPointer {
                        HTTPParser(limits: .init(maxHeaderBytes: limits.maxHeaderBytes, maxBodyBytes: limits.maxBodyBytes))
                            .parseHead(UnsafeBufferPointer(rebasing: $0[start..<end]))
                    }
                    switch parsed {
                    case .failure(let f):
                        refuse(.malformed(f), now: now, &actions)
                        return
                    case .success(var head):
                        head.length = end
                        consumeInbound(end)
                        beginBody(head, now: now, &actions)
                    }
                }
            case .awaitingContinue(let head, let framing, let deadline):
                guard !inbound.isEmpty else { return }
                state = .readingBody(head, framing, deadline: deadline)
            case .readingBody(let head, .length(let remaining), let deadline):
                guard !inbound.isEmpty else { return }
                let take = min(remaining, inbound.count)
                body.append(contentsOf: inbound[0..<take])
                consumeInbound(take)
                if take == remaining {
                    dispatch(head, &actions)
                } else {
                    state = .readingBody(head, .length(remaining: remaining - take), deadline: deadline)
                }
                return
            case .readingBody(let head, .chunked(var decoder, let waiting), let deadline):
                guard !inbound.isEmpty, !waiting else { return }
                // The decoder appends at most the room reserved; past it, it stops and says so.
                let room = bodyReserved - body.count
                let step = inbound.withUnsafeBytes { decoder.feed($0, into: &body, room: room) }
                switch step {
                case .needMore:
                    consumeInbound(inbound.count)
                    state = .readingBody(head, .chunked(decoder, waitingForBudget: false), deadline: deadline)
                    return
                case .needRoom(let used):
                    consumeInbound(used)
                    let needed = body.count + decoder.dataBytes(in: inbound.count)
                    let grown = growBody(to: needed)
                    state = .readingBody(head, .chunked(decoder, waitingForBudget: !grown), deadline: deadline)
                    if !grown {
                        actions.append(.waitForBudget)
                        return
                    }
                case .done(let used):
                    consumeInbound(used)
                    dispatch(head, &actions)
                    return
                case .failure(let f):
                    refuse(.malformed(f), now: now, &actions)
                    return
                }
            case .dispatched, .writing, .lingering, .closed:
                return
            }
        }
    }

    /// The head is read: choose the body framing, reserve its bytes, answer 100-continue.
    mutating func beginBody(_ head: HTTPParser.Head, now: UInt64, _ actions: inout [Action]) {
        let deadline = now + limits.bodyTimeout
        let framing: BodyFraming
        if head.chunked {
            framing = .chunked(ChunkedDecoder(maxBody: limits.maxBodyBytes), waitingForBudget: false)
        } else {
            // No Content-Length and no Transfer-Encoding: an empty body (RFC 9112 §6.3).
            let length = head.contentLength ?? 0
            if length == 0 {
                dispatch(head, &actions)
                return
            }
            guard length <= limits.maxBodyBytes else {
                refuse(.bodyTooLarge(length: length, limit: limits.maxBodyBytes), now: now, &actions)
                return
            }
            guard budget.reserve(length) else {
                refuse(.budgetSpent, now: now, &actions)
                return
            }
            bodyReserved = length
            body.reserveCapacity(length)
            framing = .length(remaining: length)
        }
        // 100-continue only when no body byte came with the head (the parser drops the
        // expectation for HTTP/1.0, which would not understand an interim answer).
        if head.expectContinue && inbound.isEmpty {
            actions.append(.sendContinue)
            state = .awaitingContinue(head, framing, deadline: deadline)
        } else {
            state = .readingBody(head, framing, deadline: deadline)
        }
    }

    /// Grows the chunked body's reservation to at least `needed` bytes: in doublings from
    /// 64 KiB while the budget allows (few reservations for a large body), else exactly.
    mutating func growBody(to needed: Int) -> Bool {
        let grown = min(max(needed, bodyReserved * 2, 65536), limits.maxBodyBytes)
        if grown > needed, budget.reserve(grown - bodyReserved) {
            bodyReserved = grown
        } else if budget.reserve(needed - bodyReserved) {
            bodyReserved = needed
        } else {
            return false
        }
        body.reserveCapacity(bodyReserved)
        return true
    }

    /// Hands the body, and its reservation, to the application.
    mutating func dispatch(_ head: HTTPParser.Head, _ actions: inout [Action]) {
        var out: [UInt8] = []
        swap(&out, &body)
        actions.append(.dispatch(head, body: out, reservation: bodyReserved))
        bodyReserved = 0
        state = .dispatched(head, pipelineRefused: false)
    }

    /// Input arrived that the budget cannot hold (it was not buffered). Before a request is
    /// whole it is refused 503; behind a request already taken, the input is lost, so the
    /// connection ends (lingering) after that request's answer.
    mutating func overBudget(now: UInt64, _ actions: inout [Action]) {
        switch state {
        case .awaitingRequest, .readingHead, .awaitingContinue, .readingBody:
            refuse(.budgetSpent, now: now, &actions)
        case .dispatched(let head, _):
            dropInbound()
            state = .dispatched(head, pipelineRefused: true)
        case .writing(_, let deadline):
            dropInbound()
            state = .writing(after: .linger, deadline: deadline)
        case .lingering, .closed:
            preconditionFailure("overBudget in \(stateName): no input is buffered there")
        }
    }

    /// Answers a refusal with `Connection: close`, then lingers: the client may still be sending
    /// a body we will not read, and closing with unread input would reset the connection before
    /// the client reads the answer.
    mutating func refuse(_ reason: Refusal.Reason, now: UInt64, _ actions: inout [Action]) {
        releaseBody()
        dropInbound()
        actions.append(.send(Outbound(content: .refusal(Refusal(reason: reason)), keepAlive: false, minorVersion: 1, isHead: false)))
        state = .writing(after: .linger, deadline: now + limits.lingerTimeout)
    }

    mutating func close(_ actions: inout [Action]) {
        releaseBody()
        dropInbound()
        state = .closed
        actions.append(.close)
    }

    /// After EOF: close unless a request may still complete from what is buffered.
    mutating func closeIfNothingMoreCanArrive(_ actions: inout [Action]) {
        guard peerClosed else { return }
        switch state {
        case .readingBody(_, .chunked(let decoder, waitingForBudget: true), _):
            // Buffered input waits for budget to be decoded: if it completes the body, the
            // request is whole and is answered once the budget allows.
            if !inbound.withUnsafeBytes({ decoder.wouldFinish($0) }) { close(&actions) }
        case .awaitingRequest, .readingHead, .awaitingContinue, .readingBody:
            // Every complete request was framed as its bytes arrived; a partial one never completes.
            close(&actions)
        case .dispatched, .writing, .lingering, .closed:
            break
        }
    }

    // MARK: the budget

    /// Buffers `bytes` behind `inbound`, reserving them first. False (nothing buffered) when
    /// the budget cannot hold them.
    mutating func bufferInbound(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !bytes.isEmpty else { return true }
        guard budget.reserveInput(bytes.count) else { return false }
        inbound.append(contentsOf: bytes)
        return true
    }

    /// Removes the first `n` bytes of `inbound` (framed) and releases them.
    mutating func consumeInbound(_ n: Int) {
        guard n > 0 else { return }
        if n == inbound.count { inbound.removeAll(keepingCapacity: true) } else { inbound.removeFirst(n) }
        budget.release(n)
    }

    mutating func dropInbound() {
        if !inbound.isEmpty { budget.release(inbound.count) }
        inbound = []
    }

    mutating func releaseBody() {
        if bodyReserved > 0 { budget.release(bodyReserved) }
        bodyReserved = 0
        body = []
    }

    // MARK: reading and deadlines

    /// Appends the read and deadline actions the new state implies, when they changed.
    mutating func finish(_ actions: [Action]) -> [Action] {
        var actions = actions
        guard !isClosed else { return actions }
        let read = wantsToRead
        if read != reportedReading {
            reportedReading = read
            actions.append(read ? .readMore : .stopReading)
        }
        let d = deadline
        if d != reportedDeadline {
            reportedDeadline = d
            actions.append(d.map { .armDeadline($0) } ?? .disarmDeadline)
        }
        return actions
    }

    var wantsToRead: Bool {
        if peerClosed { return false }
        switch state {
        case .closed: return false
        case .lingering, .writing(.linger, _): return true
        case .awaitingRequest, .readingHead, .awaitingContinue: return true
        case .readingBody(_, .chunked(_, let waiting), _): return !waiting
        case .readingBody(_, .length, _): return true
        case .dispatched(_, let pipelineRefused): return !pipelineRefused && inbound.count < limits.pipelineBufferBytes
        case .writing(.nextRequest, _), .writing(.close, _): return inbound.count < limits.pipelineBufferBytes
        }
    }

    static func wantsKeepAlive(_ head: HTTPParser.Head) -> Bool {
        var close = false, keepAlive = false
        for (name, value) in head.headers where name.caseInsensitiveEquals("connection") {
            for token in value.split(separator: ",") {
                let t = token.trimmingCharacters(in: [" ", "\t"]).lowercased()
                if t == "close" { close = true } else if t == "keep-alive" { keepAlive = true }
            }
        }
        if close { return false }
        return head.minorVersion >= 1 || keepAlive
    }
}
