/// The vocabulary of `ConnectionStateMachine`: its states, and the actions it returns.
extension ConnectionStateMachine {
    enum TimeoutKind: String, Sendable, Equatable, CaseIterable {
        /// The head was not complete by its deadline (or a fresh connection sent nothing).
        case head
        /// The body was not complete by its deadline.
        case body
        /// A keep-alive connection had no request for `idleTimeout`.
        case idle
        /// An answer was not taken by the client within `idleTimeout`.
        case write
    }

    /// What happens once the answer being written is out.
    enum AfterWrite: Sendable, Equatable {
        case nextRequest
        case close
        /// Shut the write side and drop input for a while, so the client reads the answer.
        case linger
    }

    /// A request the transport answers itself, as a status and a reason. The machine speaks no
    /// API: the shell words it (`TransportRefusal`) and the application renders the body.
    struct Refusal: Sendable, Equatable {
        enum Reason: Sendable, Equatable {
            /// The bytes cannot be a valid request (the parser's or chunk decoder's status and why).
            case malformed(HTTPParser.Failure)
            /// The head or body was not complete by its deadline.
            case timedOut(TimeoutKind)
            /// A Content-Length over `maxBodyBytes`.
            case bodyTooLarge(length: Int, limit: Int)
            /// The buffered-bytes budget cannot hold the request's bytes.
            case budgetSpent
        }

        var reason: Reason

        var status: Int {
            switch reason {
            case .malformed(let f): return f.status
            case .timedOut: return 408
            case .bodyTooLarge: return 413
            case .budgetSpent: return 503
            }
        }
    }

    /// An answer for the shell to serialise (Date, Content-Length, Connection) and write.
    struct Outbound: Sendable {
        enum Content: Sendable {
            /// The application's answer.
            case answer(HTTPResponse)
            /// Answered by the transport itself (framing, limits, timeouts, budget).
            case refusal(Refusal)
        }

        var content: Content
        var keepAlive: Bool
        var minorVersion: Int
        var isHead: Bool

        var status: Int {
            switch content {
            case .answer(let r): return r.status
            case .refusal(let r): return r.status
            }
        }

        var refusal: Refusal? {
            if case .refusal(let r) = content { return r }
            return nil
        }
    }

    enum Action: Sendable {
        case readMore
        /// Back-pressure: stop reading until `readMore`.
        case stopReading
        case armDeadline(UInt64)
        case disarmDeadline
        /// Hand the request to the application; answer with `jobFinished`. `reservation` bytes
        /// of the budget, held for `body`, now belong to the application's job: the shell
        /// releases them when the application is done with the body, whatever happens to the
        /// connection meanwhile.
        case dispatch(HTTPParser.Head, body: [UInt8], reservation: Int)
        /// Write `HTTP/1.1 100 Continue`.
        case sendContinue
        /// Write this answer, then report `writeCompleted`.
        case send(Outbound)
        /// Shut the write side (the answer is out) and keep reading, dropping the bytes.
        case shutdownWriteAndLinger
        case close
        /// Count a timeout of this kind (the close or 408 comes as its own action).
        case timedOut(TimeoutKind)
        /// A chunked body cannot grow within the memory budget: call `budgetRetry` a little later.
        case waitForBudget
    }

    enum BodyFraming: Sendable {
        case length(remaining: Int)
        /// `waitingForBudget`: the decoder needs room for more data than the budget would give;
        /// reading has stopped until `budgetRetry` finds the room.
        case chunked(ChunkedDecoder, waitingForBudget: Bool)
    }

    /// Every state carries the data that means something in it, and nothing else.
    enum State {
        /// No request in progress: fresh (head deadline from accept) or idle between keep-alive
        /// requests (idle deadline). The only reusable state.
        case awaitingRequest(since: UInt64, deadline: UInt64, kind: TimeoutKind)
        /// A head is arriving; `scanner` remembers how far `inbound` was scanned, so each byte
        /// is looked at once.
        case readingHead(deadline: UInt64, scanner: HeadScanner)
        /// `100 Continue` sent, no body byte yet.
        case awaitingContinue(HTTPParser.Head, BodyFraming, deadline: UInt64)
        case readingBody(HTTPParser.Head, BodyFraming, deadline: UInt64)
        /// The application has the request. `pipelineRefused`: input sent behind it could not
        /// be held within the budget and was dropped, so the connection ends after this answer.
        case dispatched(HTTPParser.Head, pipelineRefused: Bool)
        case writing(after: AfterWrite, deadline: UInt64)
        /// After a refusal: write side shut, input dropped, for a bounded time and byte count.
        case lingering(deadline: UInt64, discarded: Int)
        case closed
    }
}
