"""Serve the FaceErase web page locally: web/ as the site, the repository's hub/model.onnx as /model.onnx (one copy
of the model in the repository), with the cross-origin isolation headers (COOP and COEP) under which browsers let
onnxruntime-web run several WebAssembly threads.

    python web/serve.py                  # http://127.0.0.1:8000/
    python web/serve.py --port 0         # any free port; the first line printed is the page's address
    python web/serve.py --no-isolation   # without COOP/COEP: one WebAssembly thread
"""

from __future__ import annotations

import argparse
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

WEB = Path(__file__).resolve().parent
MODEL = WEB.parent / "hub" / "model.onnx"
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}


class Handler(SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map,
                                                ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def __init__(self, *args, isolation: bool, **kwargs):
        self.isolation = isolation
        super().__init__(*args, directory=str(WEB), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.split("?", 1)[0].split("#", 1)[0] == "/model.onnx":
            return str(MODEL)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        if self.isolation:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
        super().end_headers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--no-isolation", action="store_true", help="omit the COOP/COEP headers (one WASM thread)")
    args = parser.parse_args()
    for needed, fix in ((MODEL, "export it: faceerase export-onnx hub"),
                        (WEB / "node_modules" / "onnxruntime-web" / "dist", "run `npm ci` in web/")):
        if not needed.exists():
            parser.error(f"{needed} is missing: {fix}")
    server = ThreadingHTTPServer((args.host, args.port),
                                 functools.partial(Handler, isolation=not args.no_isolation))
    print(f"http://{args.host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
