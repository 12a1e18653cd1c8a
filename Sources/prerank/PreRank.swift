import ArgumentParser

/// The `prerank` command line: each verb parses its arguments and calls the libraries.
@main
struct PreRank: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prerank",
        abstract: "Online pre-rank scoring with twin-tower ResFlow models.",
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
}
