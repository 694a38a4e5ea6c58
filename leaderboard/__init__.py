"""The static leaderboard: result records -> tables (pandas) -> plots (matplotlib) -> pages (jinja2).

`leaderboard.build.build_site` builds the site; `leaderboard.serve.serve` serves a built one locally.
"""
