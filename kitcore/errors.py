"""The kit's one error type: a problem a user can fix, said in one line."""


class KitError(Exception):
    """A user-facing error: `problem; fix: what to do`. The CLI prints it as one line and exits 2."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}; fix: {fix}")
        self.problem = problem
        self.fix = fix
