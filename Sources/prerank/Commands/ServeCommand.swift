import ArgumentParser
import Foundation
import PreRankServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve POST /prerank (and /healthz, /readyz, /metrics, /v1/model, /admin/reload).",
        discussion: """
            Loads config, model and index (all must be valid to start), then serves HTTP/1.1 until
            SIGTERM or SIGINT, which stop accepting, drain requests in flight and exit 0. SIGHUP
            or POST /admin/reload re-reads config, model and index; a reload that fails
            validation is refused and the old ones keep serving.
            """
    )

    @Option(help: "Config file (YAML). It must name model.dir and model.index (no default path) unless --model and --index do.") var config: String?
    @Option(help: "Model directory (overrides model.dir).") var model: String?
    @Option(help: "Item index (overrides model.index).") var index: String?
    @Option(help: "Listen address (overrides server.host).") var host: String?
    @Option(parsing: .unconditional, help: "Listen port (overrides server.port; 0 picks a free one).") var port: Int?

    func validate() throws {
        if let problem = BuildInfo.kernelEnvironmentProblem(ProcessInfo.processInfo.environment) { throw CLIError(problem) }
        do throws(ConfigError) {
            try ConfigLoader.checkServeFlags(host: host, port: port, modelDir: model, index: index)
        } catch {
            // One line, like every other refusal (ValidationError would append the usage).
            throw CLIError(error.description)
        }
    }

    func run() throws {
        do {
            try ServerMain.run(configPath: config, modelDir: model, index: index, host: host, port: port)
        } catch let e as ServerMain.RunError {
            AsyncLogWriter.standardError.flush()
            throw CLIError(e.description)
        }
    }
}
