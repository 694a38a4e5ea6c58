"""cifarzoo: the command-line shell over `zoo`, `benchmark` and `leaderboard`."""

__version__ = "0.1.0"
