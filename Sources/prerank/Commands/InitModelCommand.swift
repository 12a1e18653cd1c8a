import ArgumentParser
import Foundation
import Training
import TwinTower

struct InitModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-model",
        abstract: "Write an untrained model (random weights) for a feature spec.",
        discussion: "For smoke tests and format checks; `prerank train` makes real models."
    )

    @Option(help: "features.yaml with tasks and features.") var features: String
    @Option(help: "Output model directory.") var out: String
    @Option(help: "resflow, nse, nse+fr, nse+lr or esmm.") var arch: String = "resflow"
    @Flag(help: "Clamp residual logits at 0 for k > 0.") var clamp = false
    @Option(help: "Hidden widths, comma-separated (empty for none).") var hidden: String = "64,32"
    @Option(parsing: .unconditional, help: "Output width d.") var d: Int = 32
    @Option(parsing: .unconditional, help: "Random seed.") var seed: UInt64 = 1

    func run() throws {
        let widths = try hidden.split(separator: ",").map { part -> Int in
            guard let w = Int(part.trimmingCharacters(in: .whitespaces)), w >= 1 else { throw CLIError("--hidden must be positive integers, got \(hidden)") }
            return w
        }
        guard d >= 1 else { throw CLIError("--d must be at least 1") }
        guard let architecture = Architecture.named(arch, hidden: widths, d: d, clamp: clamp) else {
            throw CLIError("--arch must be resflow, nse, nse+fr, nse+lr or esmm, not \(arch)")
        }
        do {
            let file = try FeaturesFile.load(path: features)
            let spec = ModelSpec(version: "random-\(arch)-\(seed)", tasks: file.tasks, architecture: architecture, features: file.features)
            var rng = SplitMix64(seed: seed)
            let saved = try ModelStore.save(ModelStore.random(spec: spec, using: &rng), directory: out)
            print("wrote \(out) (\(spec.tasks.count) tasks, fingerprint \(saved.fingerprint.prefix(12)))")
        } catch {
            throw CLIError(error.description)  // the do block throws only FormatError
        }
    }
}
