"""Command ``serve``: the web service (upload, view, edit, statistics, downloads)."""
from __future__ import annotations

from pathlib import Path

import typer

from particlesnn.cli._app import app


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    data: Path = typer.Option(Path("particlesnn-data"), "--data",
                              help="Folder for the database and every uploaded file and result."),
    workers: int = typer.Option(1, min=1, help="Analysis threads (images analysed at once)."),
    max_file_mb: float = typer.Option(256.0, min=0.001, help="Largest uploaded file, MiB."),
    max_request_mb: float = typer.Option(1024.0, min=0.001, help="Largest upload request (all files), MiB."),
    max_mpx: float = typer.Option(64.0, min=0.0001, help="Largest image, megapixels (rows x cols / 1e6)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Run the web service: open http://HOST:PORT in a browser; JSON API described at /docs."""
    import uvicorn

    from particlesnn.web import create_app

    web = create_app(
        data,
        workers=workers,
        max_file_bytes=int(max_file_mb * 1024**2),
        max_request_bytes=int(max_request_mb * 1024**2),
        max_pixels=int(max_mpx * 1e6),
    )
    typer.echo(f"particlesnn web service on http://{host}:{port}  (data in {data.resolve()})")
    uvicorn.run(web, host=host, port=port, log_level=log_level)
