import Foundation
import Testing
import TwinTower
@testable import Training

@Suite("RequestLogJoin")
struct RequestLogJoinTests {
    static let features = """
        tasks: [{name: ctr, label: click}, {name: atcr, label: cart}, {name: ctcvr, label: order}]
        features:
          - {name: user_id, side: user, kind: categorical, buckets: 101, dim: 4}
          - {name: query_terms, side: user, kind: multi, buckets: 101, dim: 4}
          - {name: age, side: user, kind: dense}
          - {name: segment, side: user, kind: categorical, buckets: 11, dim: 2}
          - {name: item_id, side: item, kind: categorical, buckets: 101, dim: 4}
          - {name: brand, side: item, kind: categorical, buckets: 11, dim: 2}
          - {name: price, side: item, kind: dense}
        """

    // Lines as RequestLogLine.encode writes them (the server-side encoder is tested in
    // PreRankServerTests; this target must not depend on PreRankServer).
    static let log1 = """
        {"time":"2026-11-23T02:03:04.123Z","request_id":"r-1","model_version":"v1","arm":"stable","fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0},"user":{"age":31.0,"user_id":"u42"},"query":{"query_terms":["red","shoes, tall"],"unknown":"x"},"candidates":[10,11,12],"relevance":[2,0,3],"items":[{"id":12,"score":0.5,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}},{"id":10,"score":0.25,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}}],"partial":false}
        not json
        {"time":"2026-11-23T02:03:05.000Z","request_id":null,"model_version":"v1","arm":"stable","fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0},"user":{"user_id":"u9"},"query":{},"candidates":[10],"items":[{"id":10,"score":0.2,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}}],"partial":false}

        """
    static let log2 = """
        {"time":"2026-11-23T02:04:00.000Z","request_id":"r-2","model_version":"v2","arm":"canary","fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0},"user":{"user_id":7,"segment":3,"age":null},"query":{"query_terms":[]},"candidates":null,"items":[{"id":99,"score":0.125,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}},{"id":11,"score":0.0625,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}}],"partial":true}
        {"time":"2026-11-23T02:04:01.000Z","request_id":"r-1","model_version":"v1","arm":"stable","fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0},"user":{"user_id":"retry"},"query":{},"candidates":[10],"items":[{"id":10,"score":0.2,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}}],"partial":false}

        """
    static let labels = """
        request_id,item_id,click,cart,order
        r-1,12,1,0,0
        r-1,10,0,0,1
        r-2,11,1,1,0
        r-2,55,1,0,0
        r-3,10,1,0,0

        """
    static let items = """
        item_id,brand,price,extra
        10,acme,9.5,z
        11,"bo,lt",20,z
        12,acme,,z

        """

    @Test func joinsLogsLabelsAndCatalog() throws {
        let dir = NSTemporaryDirectory() + "prerank-join-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let logs = dir + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.log1.write(toFile: logs + "/requests-20261123T020304Z-000001.jsonl", atomically: true, encoding: .utf8)
        try Self.log2.write(toFile: logs + "/requests-20261123T020400Z-000002.jsonl", atomically: true, encoding: .utf8)
        // The second file compressed, as the server leaves finished files.
        let gz = Process()
        gz.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gz.arguments = ["gzip", logs + "/requests-20261123T020400Z-000002.jsonl"]
        try gz.run()
        gz.waitUntilExit()
        #expect(gz.terminationStatus == 0)
        _ = FileManager.default.createFile(atPath: logs + "/other.txt", contents: Data("ignored".utf8))
        try Self.labels.write(toFile: dir + "/labels.csv", atomically: true, encoding: .utf8)
        try Self.items.write(toFile: dir + "/items.csv", atomically: true, encoding: .utf8)

        let spec = try FeaturesFile.parse(yaml: Self.features)
        let summary = try LogJoin.run(LogJoin.Options(logs: [logs], labels: dir + "/labels.csv", features: spec,
                                                      items: dir + "/items.csv", out: dir + "/train.csv"))
        let csv = try String(contentsOfFile: dir + "/train.csv", encoding: .utf8)
        #expect(csv == """
            request_id,user_id,query_terms,age,segment,item_id,brand,price,relevance,click,cart,order
            r-1,u42,"red|shoes, tall",31,,12,acme,,3,1,0,0
            r-1,u42,"red|shoes, tall",31,,10,acme,9.5,2,1,1,1
            r-2,7,,,3,99,,,0,0,0,0
            r-2,7,,,3,11,"bo,lt",20,0,1,1,0

            """)
        #expect(summary.files == 2)
        #expect(summary.lines == 5)
        #expect(summary.badLines == 1)
        #expect(summary.withoutRequestID == 1)
        #expect(summary.duplicateRequests == 1)
        #expect(summary.requests == 2)
        #expect(summary.rows == 4)
        #expect(summary.itemsNotInCatalog == 1)
        #expect(summary.labelsMatched == 3)
        #expect(summary.labelsUnmatched == 2)
        #expect(summary.labelsMadeProgressive == 1)
        #expect(!FileManager.default.fileExists(atPath: dir + "/train.csv.tmp"))

        // Without labels or catalog, with serving columns.
        _ = try LogJoin.run(LogJoin.Options(logs: [logs + "/requests-20261123T020304Z-000001.jsonl"], labels: nil,
                                            features: spec, items: nil, out: dir + "/plain.csv", servingColumns: true))
        let plain = try String(contentsOfFile: dir + "/plain.csv", encoding: .utf8)
        #expect(plain == """
            request_id,user_id,query_terms,age,segment,item_id,brand,price,relevance,click,cart,order,arm,model_version,rank,score
            r-1,u42,"red|shoes, tall",31,,12,,,3,0,0,0,stable,v1,1,0.5
            r-1,u42,"red|shoes, tall",31,,10,,,2,0,0,0,stable,v1,2,0.25

            """)
    }

    /// `--dropped`: the logged dropped sample becomes rows with `exposed = 0`, every label 0 (even
    /// where a label row names the pair), `weight = 1/π`; returned items get `exposed = 1`,
    /// `weight = 1`; a request logged without `dropped` keeps its exposed rows only.
    @Test func droppedSampleBecomesWeightedUnexposedRows() throws {
        let dir = NSTemporaryDirectory() + "prerank-join-dropped-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = """
            {"time":"2026-11-23T02:03:04.123Z","request_id":"r-1","model_version":"v1","arm":"stable","fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0},"user":{"user_id":"u42"},"query":{},"candidates":[10,11,12,13,14,15,16],"relevance":[1,2,3,0,1,2,3],"items":[{"id":12,"score":0.5,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}}],"partial":false,"dropped":{"inclusion":0.3333333333333333,"items":[{"id":11,"probabilities":{"ctr":0.01,"atcr":0.005,"ctcvr":0.001}},{"id":15,"probabilities":{"ctr":0.02,"atcr":0.01,"ctcvr":0.002}}]}}
            {"time":"2026-11-23T02:03:05.000Z","request_id":"r-2","model_version":"v1","arm":"stable","fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0},"user":{"user_id":"u7"},"query":{},"candidates":[10,11,12],"items":[{"id":10,"score":0.5,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}}],"partial":false,"dropped":{"inclusion":0.5,"items":[{"id":12,"probabilities":{"ctr":0.01,"atcr":0.005,"ctcvr":0.001}}]}}
            {"time":"2026-11-23T02:03:06.000Z","request_id":"r-3","model_version":"v1","arm":"stable","fusion":{"formula":"additive","alpha":1,"beta":20,"gamma":0},"user":{"user_id":"u8"},"query":{},"candidates":[10],"items":[{"id":10,"score":0.5,"probabilities":{"ctr":0.1,"atcr":0.05,"ctcvr":0.01}}],"partial":false}

            """
        try log.write(toFile: dir + "/requests-20261123T020304Z-000001.jsonl", atomically: true, encoding: .utf8)
        try "request_id,item_id,click,cart,order\nr-1,12,1,0,0\nr-1,15,1,1,0\n".write(toFile: dir + "/labels.csv", atomically: true, encoding: .utf8)
        try Self.items.write(toFile: dir + "/items.csv", atomically: true, encoding: .utf8)
        let spec = try FeaturesFile.parse(yaml: Self.features)
        let summary = try LogJoin.run(LogJoin.Options(logs: [dir], labels: dir + "/labels.csv", features: spec, items: dir + "/items.csv",
                                                      out: dir + "/train.csv", servingColumns: true, dropped: true))
        #expect(try String(contentsOfFile: dir + "/train.csv", encoding: .utf8) == """
            request_id,user_id,query_terms,age,segment,item_id,brand,price,relevance,click,cart,order,exposed,weight,arm,model_version,rank,score
            r-1,u42,,,,12,acme,,3,1,0,0,1,1,stable,v1,1,0.5
            r-1,u42,,,,11,"bo,lt",20,2,0,0,0,0,3,stable,v1,,
            r-1,u42,,,,15,,,2,0,0,0,0,3,stable,v1,,
            r-2,u7,,,,10,acme,9.5,0,0,0,0,1,1,stable,v1,1,0.5
            r-2,u7,,,,12,acme,,0,0,0,0,0,2,stable,v1,,
            r-3,u8,,,,10,acme,9.5,0,0,0,0,1,1,stable,v1,1,0.5

            """)
        #expect(summary.rows == 6 && summary.droppedRows == 3 && summary.requestsWithoutDropped == 1)
        #expect(summary.labelsMatched == 1 && summary.labelsUnmatched == 1)  // r-1/15 was dropped: its label is not used
        // Without the flag the dropped samples are ignored and the columns absent.
        _ = try LogJoin.run(LogJoin.Options(logs: [dir], labels: nil, features: spec, items: nil, out: dir + "/plain.csv"))
        let plain = try String(contentsOfFile: dir + "/plain.csv", encoding: .utf8)
        #expect(plain.hasPrefix("request_id,user_id,query_terms,age,segment,item_id,brand,price,relevance,click,cart,order\n"))
        #expect(plain.split(separator: "\n").count == 4)
        #expect(LogJoin.weightCell(1 / (5.0 / 190)) == "38" && LogJoin.weightCell(1 / (7.0 / 3)) == "0.428571428571")
    }

    @Test func rejectsBadInputs() throws {
        let spec = try FeaturesFile.parse(yaml: Self.features)
        #expect(throws: LogJoin.Error.self) {
            try LogJoin.run(LogJoin.Options(logs: ["/nonexistent/logs"], labels: nil, features: spec, items: nil, out: "/tmp/x.csv"))
        }
    }

    /// A label cell that is not a number or true/false stops the join with the file and line
    /// (it was read as 0: a typo became a negative example).
    @Test func badLabelStopsWithFileAndLine() throws {
        let dir = NSTemporaryDirectory() + "prerank-join-bad-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.log1.write(toFile: dir + "/logs/requests-20261123T020304Z-000001.jsonl", atomically: true, encoding: .utf8)
        try "request_id,item_id,click,cart,order\nr-1,12,1,0,0\nr-1,10,yes,0,1\n".write(toFile: dir + "/labels.csv", atomically: true, encoding: .utf8)
        let spec = try FeaturesFile.parse(yaml: Self.features)
        do {
            _ = try LogJoin.run(LogJoin.Options(logs: [dir + "/logs"], labels: dir + "/labels.csv", features: spec, items: nil, out: dir + "/out.csv"))
            Issue.record("a bad label was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains(dir + "/labels.csv line 3"), "\(text)")
            #expect(text.contains("click") && text.contains("\"yes\""))
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.csv"))
    }

    @Test func labelCells() {
        #expect(LogJoin.parseLabel("1") == true && LogJoin.parseLabel(" 0 ") == false && LogJoin.parseLabel("") == false)
        #expect(LogJoin.parseLabel("TRUE") == true && LogJoin.parseLabel("false") == false && LogJoin.parseLabel("0.5") == true)
        #expect(LogJoin.parseLabel("yes") == nil && LogJoin.parseLabel("nan") == nil && LogJoin.parseLabel("1x") == nil)
    }
}
