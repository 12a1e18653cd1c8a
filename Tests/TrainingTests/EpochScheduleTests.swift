import Testing
@testable import Training

/// The epoch schedule (issue 25): warm start until validation stops improving, ids from the best
/// warm-start epoch, stop by patience; `--epochs` only a cap. Scores are fed by hand, so each
/// decision is checked without training.
@Suite struct EpochScheduleTests {
    /// Feeds `scores` (epoch 1, 2, …) until the schedule stops; returns every action.
    static func run(_ schedule: inout EpochSchedule, _ scores: [Double?]) -> [EpochAction] {
        var actions: [EpochAction] = []
        for (i, s) in scores.enumerated() {
            let a = schedule.record(epoch: i + 1, score: s)
            actions.append(a)
            if case .stop = a { break }
        }
        return actions
    }

    @Test func warmStartEndsOnAPlateauAndIdsStartFromTheBestEpochNotTheLast() {
        var s = EpochSchedule(maxEpochs: 40, patience: 2, warmStart: .untilPlateau)
        // Warm start improves to epoch 5, then two epochs without improvement: ids start at 8
        // from epoch 5's model; the ids improve once (epoch 8), then twice not: stop by patience.
        let actions = Self.run(&s, [0.60, 0.62, 0.63, 0.64, 0.65, 0.649, 0.648, 0.66, 0.655, 0.659, 0.7])
        #expect(actions.count == 10)
        #expect(actions[6] == .startIDs(restoring: 5))
        #expect(actions.prefix(6).allSatisfy { $0 == .next })
        #expect(actions[7] == .next && actions[8] == .next)
        #expect(actions[9] == .stop(.patience))
        #expect(s.best?.epoch == 8 && s.firstIDEpoch == 8 && s.warmStartEnd == .patience)
    }

    @Test func idsThatNeverBeatTheWarmStartLeaveItTheBestEpoch() {
        var s = EpochSchedule(maxEpochs: 40, patience: 2, warmStart: .untilPlateau)
        let actions = Self.run(&s, [0.60, 0.61, 0.60, 0.60, 0.59, 0.58])
        #expect(actions[3] == .startIDs(restoring: 2))
        #expect(actions.last == .stop(.patience) && actions.count == 6)
        // The kept epoch is before the first id epoch: the trainer exports ids off.
        #expect(s.best?.epoch == 2 && s.firstIDEpoch == 5)
    }

    @Test func theCapEndsARunThatStillImprovesAndLeavesTheIdsTheLastEpoch() {
        var s = EpochSchedule(maxEpochs: 3, patience: 2, warmStart: .untilPlateau)
        let actions = Self.run(&s, [0.6, 0.7, 0.8, 0.9])
        #expect(actions == [.next, .startIDs(restoring: 2), .stop(.maxEpochs)])
        #expect(s.warmStartEnd == .maxEpochs && s.firstIDEpoch == 3)
    }

    @Test func aFixedWarmStartRunsItsEpochsWhateverValidationSays() {
        var s = EpochSchedule(maxEpochs: 10, patience: 1, warmStart: .epochs(3))
        // Epoch 2 is worse (patience 1 would end an automatic warm start there): it runs to 3,
        // and ids start from the best, epoch 1.
        let actions = Self.run(&s, [0.7, 0.6, 0.65, 0.72, 0.71])
        #expect(actions == [.next, .next, .startIDs(restoring: 1), .next, .stop(.patience)])
        #expect(s.warmStartEnd == .epochs && s.best?.epoch == 4)
    }

    @Test func withoutIdsOrWarmStartTheRunIsOnePhase() {
        for warm in [EpochSchedule.WarmStart.none, .epochs(0)] {
            var s = EpochSchedule(maxEpochs: 40, patience: 2, warmStart: warm)
            #expect(s.phase == .ids && s.firstIDEpoch == 1)
            let actions = Self.run(&s, [0.6, 0.7, 0.69, 0.68, 0.9])
            #expect(actions == [.next, .next, .next, .stop(.patience)])
            #expect(s.best?.epoch == 2 && s.warmStartEnd == nil)
        }
        // One epoch: no room for a warm start.
        let one = EpochSchedule(maxEpochs: 1, patience: 2, warmStart: .untilPlateau)
        #expect(one.phase == .ids && one.warmStart == .none)
    }

    @Test func withoutValidationOnlyTheCapStopsAndWarmStartTakesTheOldThreeEpochs() {
        var s = EpochSchedule(maxEpochs: 6, patience: 1, warmStart: .untilPlateau)
        let actions = Self.run(&s, [nil, nil, nil, nil, nil, nil, nil])
        #expect(actions == [.next, .next, .startIDs(restoring: 3), .next, .next, .stop(.maxEpochs)])
        #expect(s.best?.epoch == 6)
    }
}
