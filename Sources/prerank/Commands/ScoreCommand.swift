import ArgumentParser
import Foundation
import PreRankServer
import TwinTower

struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Print the answer POST /prerank would give for a request body, without a server.",
        discussion: """
            Same code path as the server (decode, user tower, index kernels, fusion, top-K, encode).
            Config supplies fusion weights, top-K limits and max candidates; no time budget applies.
            On a bad request it prints the server's JSON error on stdout and exits 2.
            """
    )

    @Option(help: "Model directory.") var model: String
    @Option(help: "Item index file built for this model.") var index: String
    @Option(help: "Request body (JSON file, or - for stdin).") var request: String
    @Option(help: "Config file (fusion, topk, server.max_candidates).") var config: String?

    func run() throws {
        if let problem = BuildInfo.kernelEnvironmentProblem(ProcessInfo.processInfo.environment) { throw CLIError(problem) }
        let settings: PreRankConfig
        do {
            // --model and --index name the model; the file supplies the rest.
            settings = try config.map { try ConfigLoader.load(path: $0, requireModel: false) } ?? PreRankConfig()
        } catch let e as ConfigError {
            throw CLIError(e.description)
        }
        let body: [UInt8]
        if request == "-" {
            body = Array(FileHandle.standardInput.readDataToEndOfFile())
        } else {
            guard let data = FileManager.default.contents(atPath: request) else { throw CLIError("\(request): cannot read") }
            body = Array(data)
        }
        let bundle: ServingBundle
        do {
            bundle = try ServingBundle.load(modelDirectory: model, indexPath: index, populate: false)
        } catch {
            throw CLIError(error.description)
        }
        do {
            let outcome = try ScoringPipeline.handle(body: body, bundle: bundle,
                                                    options: ScoringPipeline.options(from: settings))
            FileHandle.standardOutput.write(Data(outcome.body + [0x0A]))
        } catch {
            FileHandle.standardOutput.write(Data((error.jsonBody + "\n").utf8))
            FileHandle.standardError.write(Data("Error: HTTP \(error.status) \(error.code): \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }
}
