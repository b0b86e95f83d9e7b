"""A stand-in Kubernetes API server for the tests: the real REST paths and list shapes, over TLS with a test CA,
on a loopback port the test opens. It serves list calls only, as `netaudit`'s live reader makes them.

What it reproduces of the real server (kubernetes/kubernetes#63676 for the list shape; the API concepts page
"Retrieving large results sets in chunks" for `limit`/`continue`):
- `GET /api/v1/pods`, `/apis/discovery.k8s.io/v1/endpointslices`, ... answer `{"kind": "PodList", "apiVersion":
  "v1", "metadata": {"resourceVersion": ...}, "items": [...]}`; items of built-in kinds carry no kind or
  apiVersion, items of custom resources do;
- `limit` and `continue` page through the items (`page_size` caps a page, so paging is exercised);
- a custom resource whose CRD is not installed is a 404 with a meta/v1 Status;
- without the bearer token 401, and a resource in `forbid` is 403 with the message RBAC writes;
- `drip` seconds: every answer's body is sent one byte at a time, that long apart (a hostile or broken server
  that keeps each recv alive).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# kind -> (API group, version, plural); the core group is "".
KINDS = {
    "Namespace": ("", "v1", "namespaces"),
    "Pod": ("", "v1", "pods"),
    "Service": ("", "v1", "services"),
    "EndpointSlice": ("discovery.k8s.io", "v1", "endpointslices"),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies"),
    "TFJob": ("kubeflow.org", "v1", "tfjobs"),
    "InferenceService": ("serving.kserve.io", "v1beta1", "inferenceservices"),
    "Revision": ("serving.knative.dev", "v1", "revisions"),
}
BUILT_IN = {"Namespace", "Pod", "Service", "EndpointSlice", "NetworkPolicy"}


def path_of(kind: str) -> str:
    group, version, plural = KINDS[kind]
    return f"/api/{version}/{plural}" if not group else f"/apis/{group}/{version}/{plural}"


class ApiServer:
    """Serves `documents` (Kubernetes objects of the kinds above) until closed. `crds` are the custom kinds
    whose API exists (every one that has objects, plus any named); the others answer 404."""

    def __init__(self, documents: list[dict], cert: Path, key: Path, token: str, *, page_size: int = 2,
                 crds: set[str] = frozenset(), forbid: set[str] = frozenset(), stall: bool = False, drip: float = 0.0):
        self.token = token
        self.page_size = page_size
        self.forbid = set(forbid)
        self.stall = stall
        self.drip = drip
        self.requests: list[dict] = []  # path, query and Authorization header of each request
        self.lists: dict[str, list[dict]] = {path_of(kind): [] for kind in BUILT_IN}
        self.list_kind = {path_of(kind): kind for kind in KINDS}
        for kind in crds:
            self.lists[path_of(kind)] = []
        for doc in documents:
            kind = doc.get("kind")
            if kind not in KINDS:
                continue
            item = dict(doc)
            if kind in BUILT_IN:  # the API server omits the type meta of a list's items
                item.pop("kind", None)
                item.pop("apiVersion", None)
            self.lists.setdefault(path_of(kind), []).append(item)
        self.release = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not server.drip:
                    self.wfile.write(data)
                    return
                self.wfile.flush()
                for i in range(len(data)):
                    if server.release.wait(server.drip):
                        return
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": message, "reason": reason, "code": code})

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                auth = self.headers.get("Authorization", "")
                server.requests.append({"path": url.path, "query": query, "authorization": auth})
                if server.stall:
                    server.release.wait(30)
                    return
                scheme, _, token = auth.partition(" ")
                if scheme.lower() != "bearer" or token != server.token:
                    return self._status(401, "Unauthorized", "Unauthorized")
                kind = server.list_kind.get(url.path)
                group, _, plural = KINDS[kind] if kind else ("", "", "")
                if kind in server.forbid:
                    return self._status(403, "Forbidden", f'{plural}{"." + group if group else ""} is forbidden: '
                                        'User "system:serviceaccount:apps:netaudit" cannot list resource '
                                        f'"{plural}" in API group "{group}" at the cluster scope')
                if url.path not in server.lists:
                    return self._status(404, "NotFound", "the server could not find the requested resource")
                items = server.lists[url.path]
                start = int(base64.b64decode(query["continue"])) if "continue" in query else 0
                size = min(int(query.get("limit", len(items) or 1)), server.page_size)
                page = items[start:start + size]
                meta = {"resourceVersion": "48151623"}
                if start + size < len(items):
                    meta["continue"] = base64.b64encode(str(start + size).encode()).decode()
                api_version = f"{group}/{KINDS[kind][1]}" if group else "v1"
                self._send(200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": page})

        return Handler


def kubeconfig(path: Path, server: str, ca: Path, token: str) -> Path:
    """A kubeconfig with one cluster, one user with a bearer token, and a current context."""
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
              "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
              "users": [{"name": "reader", "user": {"token": token}}],
              "contexts": [{"name": "test", "context": {"cluster": "test", "user": "reader"}}]}
    path.write_text(json.dumps(config))
    return path


def requests_by_path(server: ApiServer) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for request in server.requests:
        out[request["path"]].append(request)
    return out
