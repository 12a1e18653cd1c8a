class InputError(Exception):
    """Bad input: printed as one line `Error: <file>: line <n>: <what> (field)` and exit status 1."""


class TrainingError(Exception):
    """Training cannot go on or its result is not to be trusted (ranks that disagree, a checkpoint
    of another run): printed as one line `Error: <what>` and exit status 1."""
