// scripts/sanitizers/tsan.supp, evidence: `swiftc -O -sanitize=thread mutex-tsan.swift && ./mutex-tsan`
// prints 2 ThreadSanitizer reports and exact totals (no update lost); nslock-tsan.swift, the same
// with NSLock, prints none.
import Synchronization
import Foundation
// Two threads increment a counter guarded by Synchronization.Mutex; if TSan saw the lock there
// would be no report, and the total shows whether updates were lost.
final class Box: Sendable { let state = Mutex<(a: UInt64, b: UInt64)>((0, 0)) }
let box = Box()
let n = 200_000
let group = DispatchGroup()
for _ in 0..<2 {
    group.enter()
    Thread.detachNewThread {
        for _ in 0..<n { box.state.withLock { $0.a += 1; $0.b += 2 } }
        group.leave()
    }
}
group.wait()
let (a, b) = box.state.withLock { ($0.a, $0.b) }
print("a=\(a) b=\(b) expected a=\(2 * n) b=\(4 * n)")
