import ArgumentParser
import Foundation

/// A one-line reason for a failed command; swift-argument-parser prints it as
/// `Error: <reason>` on stderr and exits with status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Progress lines on stderr (`\r`-updated when stderr is a terminal).
enum Progress {
    static func line(_ text: String, final: Bool = false) {
        let tty = isatty(2) == 1
        let out = tty ? "\r\(text)\u{1B}[K" + (final ? "\n" : "") : text + "\n"
        FileHandle.standardError.write(Data(out.utf8))
    }
}
