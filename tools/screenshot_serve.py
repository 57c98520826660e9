"""Screenshot of the ``lexret serve`` page over the embedded sample (docs/serve.png).

Starts the server on a free port of 127.0.0.1, opens ``/?q=QUERY`` in Debian's headless Chromium
(driven by Playwright; no browser download) after a few warm-up searches, and saves a palette PNG,
which keeps the file small.

    python tools/screenshot_serve.py --out docs/serve.png
    python tools/screenshot_serve.py --model lexret/checkpoints/sparse-querymap --out docs/serve-querymap.png
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

from lexret.serve.process import ServerProcess


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/serve.png")
    p.add_argument("--query", default="a dog runs through the grass")
    p.add_argument("--cache-dir", default=None, help="the sample's cache folder (lexret serve --cache-dir)")
    p.add_argument("--model", default=None, help="sparse checkpoint folder (lexret serve --model; default: shipped)")
    p.add_argument("--width", type=int, default=1100)
    p.add_argument("--height", type=int, default=760)
    p.add_argument("--colors", type=int, default=128, help="palette size of the PNG")
    p.add_argument("--warmup", type=int, default=10, help="searches before the page's, so its timings are steady")
    args = p.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is not installed: apt-get install chromium")
    import httpx
    from PIL import Image
    from playwright.sync_api import sync_playwright

    server_args = ["--cache-dir", args.cache_dir] if args.cache_dir else []
    if args.model:
        server_args += ["--model", args.model]
    with ServerProcess(server_args) as srv, sync_playwright() as pw:
        for i in range(args.warmup):
            httpx.get(f"{srv.url}/api/search", params={"q": f"{args.query} {i}", "k": 30}, timeout=120)
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(f"{srv.url}/?q={quote(args.query)}")
        page.wait_for_selector(".hit img", timeout=60_000)
        page.wait_for_function("[...document.querySelectorAll('.hit img')].slice(0, 12).every(i => i.complete)")
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.png"
            page.screenshot(path=str(raw))
            browser.close()
            img = Image.open(raw).convert("RGB").quantize(args.colors, method=Image.Quantize.MEDIANCUT)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
