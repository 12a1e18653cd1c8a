class InputError(Exception):
    """Bad input: printed as one line `Error: <file>: line <n>: <what> (field)` and exit status 1."""
