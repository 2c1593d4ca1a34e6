"""Serving the dashboard's page: Solara's Starlette app under uvicorn, as Solara documents for a deployment, with the
page's web assets answered only from the files installed with it.

What the server reads: the scenario file it was started with (once, when the page's module is imported), and the web
assets of the installed packages (Solara's, and the ``solara-assets`` package's copies of what Solara would otherwise
fetch from a CDN). It writes no file: Solara's proxy would fetch a CDN file that is not installed and store it in its
cache folder, so such requests are answered 404 here; Solara's usage statistics are switched off, and its server
identity is given, so it is not written to the home folder. The page has no control that names a file, and no
command console.
"""

from __future__ import annotations

import os
from pathlib import Path

from loyaltysim.viz.dashboard import POPULATION_ENV, SCENARIO_ENV

APP = "loyaltysim.viz.app"
CDN_PATH = "/_solara/cdn/"


class InstalledAssetsOnly:
    """ASGI middleware: a request under Solara's CDN proxy path is passed on only if it names a file already in the
    proxy's folder (as installed by ``solara-assets``); anything else there is answered 404 without a fetch."""

    def __init__(self, app, folder: Path):
        self.app = app
        self.folder = Path(folder).resolve()

    def installed(self, path: str) -> bool:
        relative = path[len(CDN_PATH):].replace("\\", "/")
        if "/" not in relative.strip("/"):  # a bare package name means its main script (Solara's rule)
            relative = f"{relative.strip('/')}/__main.js"
        target = (self.folder / relative).resolve()
        return target.is_relative_to(self.folder) and target.is_file()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(CDN_PATH) and not self.installed(scope["path"]):
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"not found"})
            return
        await self.app(scope, receive, send)


def environment(scenario: Path, population: int) -> dict[str, str]:
    """The environment variables the server runs with: the scenario and its size, Solara's app, and Solara's
    settings that keep it from writing files or calling out."""
    return {
        SCENARIO_ENV: str(Path(scenario).resolve()),
        POPULATION_ENV: str(population),
        "SOLARA_APP": APP,
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "false",
        "SOLARA_TELEMETRY_SERVER_USER_ID": "loyaltysim-dashboard",
        "SOLARA_ASSETS_PROXY": "true",  # served from the installed copies (solara-assets), see InstalledAssetsOnly
    }


def serve(scenario: Path, population: int, host: str, port: int) -> None:
    """Run the dashboard's server on ``host``:``port`` until interrupted (Ctrl-C or SIGTERM)."""
    os.environ.update(environment(scenario, population))
    import uvicorn  # after the environment is set: Solara reads its settings when imported
    from solara.server import settings
    from solara.server.starlette import app

    settings.main.mode = "production"  # no reloading of changed source files, no development tools
    uvicorn.run(InstalledAssetsOnly(app, settings.assets.proxy_cache_dir), host=host, port=port,
                log_level="warning", access_log=False)
