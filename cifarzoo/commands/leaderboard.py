"""`cifarzoo leaderboard build|serve`: the static site from result records."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def leaderboard() -> None:
    """Build or serve the static leaderboard site."""


@leaderboard.command()
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder searched (recursively) for result records.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("site"), show_default=True,
              help="Output folder; a build replaces it whole.")
@click.option("--data", "data_source", metavar="SOURCE", default=None,
              help="Data source the runs used, to draw their sample test images (never stored in records).")
@click.option("--strict", is_flag=True, help="Fail (exit 2, nothing written) on any warning.")
def build(results: Path, out: Path, data_source: str | None, strict: bool) -> None:
    """Build the site from every result record under --results."""
    from leaderboard.build import build_site

    report = build_site(results, out, strict=strict, data_source=data_source)  # warnings are logged as found
    skipped = f", {report.not_ok} failed or skipped" if report.not_ok else ""
    click.echo(f"built {report.rows} entry pages from {report.records} records ({report.ok} ok{skipped}) "
               f"into {report.out}/ in {report.seconds:.1f} s; open {report.index}")


@leaderboard.command()
@click.option("--dir", "site", type=click.Path(path_type=Path), default=Path("site"), show_default=True,
              help="The built site folder.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True, help="0 picks a free port.")
@click.option("--seconds", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
def serve(site: Path, host: str, port: int, seconds: float | None) -> None:
    """Serve a built site on a local HTTP server."""
    from leaderboard.serve import make_server
    from leaderboard.serve import serve as run

    server = make_server(site, host, port)
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"serving {site}/ at http://{bound_host}:{bound_port}/ (Ctrl-C to stop)", err=False)
    try:
        run(server, seconds)
    except KeyboardInterrupt:
        click.echo("stopped.")
