import Foundation
// The same with NSLock (pthread_mutex underneath, which TSan intercepts).
final class Box: @unchecked Sendable { let lock = NSLock(); var a: UInt64 = 0; var b: UInt64 = 0 }
let box = Box()
let n = 200_000
let group = DispatchGroup()
for _ in 0..<2 {
    group.enter()
    Thread.detachNewThread {
        for _ in 0..<n { box.lock.lock(); box.a += 1; box.b += 2; box.lock.unlock() }
        group.leave()
    }
}
group.wait()
print("a=\(box.a) b=\(box.b) expected a=\(2 * n) b=\(4 * n)")
