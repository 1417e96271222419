"""``mtquery serve``: the local map page (a thin wrapper of mtquery.web.server)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mtquery.cli.options import ColumnsOpt, DatasetOpt


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on. The page has no login: "
                                      "keep 127.0.0.1 unless the network is yours.")
                    ] = "127.0.0.1",
    public: Annotated[bool, typer.Option("--public", help="Allow a --host that is not a "
                                         "loopback address (anyone who reaches it can "
                                         "query the dataset).")] = False,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser "
                                             "tab.")] = False,
    tiles: Annotated[str | None, typer.Option(help="Add an online tile layer, e.g. "
                                              "https://tile.openstreetmap.org/{z}/{x}/{y}.png "
                                              "(default: offline country outlines only).")
                     ] = None,
    core: Annotated[str | None, typer.Option(help="Major TOM Core metadata.parquet (path or "
                                             "URL) the image chips come from (default: the "
                                             "released set's own; generated sets carry "
                                             "thumbnails).")] = None,
) -> None:
    """A local web page over the dataset: click the map for the fragment's neighbours
    (shift-click: add an example, alt-click: a negative one), see each fragment's image,
    label fragments and find more like them (classify, heat map), filter by bbox and time,
    export GeoJSON / GeoParquet / CSV. ?lat=&lon=&k= or ?id= in the URL runs that query.
    The JSON API (/api/knn, /api/search) answers as --format json does."""
    import mtquery.cli.interrupt as interrupt
    from mtquery.web.guard import check_bind
    from mtquery.web.server import check_tiles
    from mtquery.web.server import serve as run_server

    check_tiles(tiles)
    if check_bind(host, public):
        sys.stderr.write(f"mtquery: warning: listening on {host}, not a loopback address: "
                         "anyone who reaches it can query the dataset (the page has no "
                         "login)\n")
    interrupt.disarm()  # Ctrl-C stops the server gracefully

    def ready(url: str) -> None:
        sys.stderr.write(f"mtquery: serving the map page at {url} (Ctrl-C to stop)\n")
        sys.stderr.flush()
        if not no_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        run_server(dataset, host=host, port=port, tiles=tiles, on_ready=ready, core=core,
                   public=public)
    except KeyboardInterrupt:  # Ctrl-C is how a server stops: not an error
        sys.stderr.write("mtquery: map page stopped\n")
