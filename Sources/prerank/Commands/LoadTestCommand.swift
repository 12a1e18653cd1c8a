import ArgumentParser

struct LoadTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "loadtest", abstract: "Open-loop constant-rate load test (in progress).")
    func run() throws {}
}
