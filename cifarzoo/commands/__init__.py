"""One module per CLI verb; each stays thin and calls into zoo / benchmark / leaderboard."""
