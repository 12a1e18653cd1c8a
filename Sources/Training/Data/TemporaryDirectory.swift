import Foundation
import TwinTower

/// A private directory under `$TMPDIR` (default `/tmp`) for scratch files.
struct TemporaryDirectory {
    let path: String

    init(prefix: String) throws(FormatError) {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FormatError(base, "cannot create a temporary directory: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    /// Removes the directory and what is in it. Files still mapped stay readable until unmapped.
    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
