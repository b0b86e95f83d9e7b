"""A plain FastAPI service on uvicorn, with routes unrelated to model serving: KServe and MLServer are
FastAPI apps on uvicorn too, so this is the decoy that proves the inference probes need more than the
framework's `server: uvicorn` header and its `{"detail":"Not Found"}` 404.

    python -m netaudit.lab.fastapi_app --port 8000 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse


def build_app():
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="inventory", docs_url=None, redoc_url=None, openapi_url=None)
    items = {1: {"id": 1, "name": "widget"}}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        if item_id not in items:
            raise HTTPException(status_code=404, detail=f"Item {item_id} does not exist.")
        return items[item_id]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    import uvicorn

    from netaudit.lab.processes import announce_when_listening

    announce_when_listening(args.port)
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
