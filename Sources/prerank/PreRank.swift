import ArgumentParser
import Foundation
import PreRankServer

/// The `prerank` command line: each verb parses its arguments and calls the libraries.
@main
struct PreRank: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prerank",
        abstract: "Online pre-rank scoring with twin-tower ResFlow models.",
        version: BuildInfo.summary,
        subcommands: [
            // verbs are registered here, one file each under Commands/
            BuildIndexCommand.self,
            InspectCommand.self,
            UpsertItemsCommand.self,
            InitModelCommand.self,
            GenerateCommand.self,
            JoinLogsCommand.self,
            ValidateConfigCommand.self,
            ScoreCommand.self,
            ServeCommand.self,
            TrainCommand.self,
            BenchCommand.self,
            BenchTrainCommand.self,
            LoadTestCommand.self,
            EvalCommand.self,
            TuneFusionCommand.self,
        ]
    )

    /// Every refusal is one line on stderr and exit ≠ 0, no usage block or backtrace: an
    /// operator's script reads the first line. `--epochs -3` is parsed as a value
    /// (`parsing: .unconditional` on numeric options) so the range check, not "missing value",
    /// answers. Help and `--version` print as ArgumentParser does.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let exit as ExitCode {
            // A verb that throws a bare ExitCode (`score` on a refused request: 2) has printed
            // its own message; ArgumentParser's description ("ExitCode(rawValue: 2)") is not one.
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            let message = message(for: error).split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? "\(error)"
            FileHandle.standardError.write(Data(("Error: " + message + "\n").utf8))
            Foundation.exit(code.rawValue)
        }
    }
}
