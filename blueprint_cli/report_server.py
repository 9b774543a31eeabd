"""The monitoring reports' web server (``blueprint ui`` starts it on 127.0.0.1): files under the
reports folder and nothing else. ``python -m http.server`` listed every folder and followed
symlinks out of it; this one answers a folder only with its ``index.html``, and a path that is
a symlink, or resolves outside the folder, with 404.

    python -m blueprint_cli.report_server <port> <reports folder>
"""

from __future__ import annotations

import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


class ReportsHandler(SimpleHTTPRequestHandler):
    """Serves regular files under ``directory`` only."""

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if not _served(path, Path(self.directory)):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):  # type: ignore[override]
        self.send_error(404, "File not found")  # never a listing
        return None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass  # the reports' paths are days and use cases: nothing worth a log


def _served(path: Path, root: Path) -> bool:
    """A regular file under ``root``, reached without any symlink."""
    root = root.resolve()
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            return False
    return path.is_file() and path.resolve().is_relative_to(root)


def serve(port: int, directory: Path) -> None:
    handler = partial(ReportsHandler, directory=str(directory.resolve()))
    with ThreadingHTTPServer((HOST, port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
