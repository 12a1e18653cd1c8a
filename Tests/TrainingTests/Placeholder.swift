// The TrainingTests target is declared in Package.swift; its tests live on the training branch.
// This file only lets the package build on branch `perf`.
