"""`k8s:` with no file: the same snapshot, read from the live API through the official `kubernetes` client.

Why the official client: it already speaks every way a kubeconfig can authenticate (tokens, client
certificates, exec plugins, OIDC) and the in-cluster service account with its rotating token
(kubernetes-client/python kubernetes/base/config: kube_config.py, incluster_config.py), which is not
netaudit's to reimplement. What it returns is not used as model objects: every list is fetched raw
(`_preload_content=False`) and handed, as the API sent it, to the same reader a `k8s:FILE` snapshot goes
through (targets/k8s_snapshot.py), so a live cluster and a dump of it give the same targets and verdicts.

Which credentials, in the order kubectl and client-go use: the kubeconfig files of KUBECONFIG, else
~/.kube/config, else the pod's service account (KUBERNETES_SERVICE_HOST and _PORT, the token and CA under
/var/run/secrets/kubernetes.io/serviceaccount). Every call has a deadline and no retry; the whole reading has
one too, kept while a page is read, not only between recvs. All pages of all lists together are held to the
caps of one snapshot file (MAX_FILE_BYTES, MAX_OBJECTS) as they arrive. A missing custom resource (404: no such
API group, no operator installed) is simply absent. So is one the credentials may not list (403), with one
warning line naming the grant: the built-in `view` ClusterRole covers no custom resource, so a reader bound to
it is common (kubernetes/kubernetes bootstrappolicy cluster-roles.yaml, `system:aggregate-to-view`). A refusal
(401, or 403 on a built-in resource) is one line that names the resource and the RBAC verb that is missing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from netaudit.core.errors import UsageError
from netaudit.core.textsafe import terminal_safe
from netaudit.targets.k8s_snapshot import MAX_FILE_BYTES, MAX_OBJECTS, Snapshot, snapshot_from_documents

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # one page of a list call
TOTAL_TIMEOUT = 120.0  # every call of one reading together
PAGE_LIMIT = 500  # items per page: the API's `limit`, continued with `metadata.continue`
MAX_PAGES = MAX_OBJECTS // PAGE_LIMIT + 1
CHUNK = 1 << 16  # at most one recv per read: the deadline is checked between them


@dataclass(frozen=True)
class Resource:
    """One list call: the resource's plural and API group (for the RBAC rule that grants it), whether its
    absence is normal (a custom resource whose operator may not be installed), and how to ask for a page."""

    plural: str
    group: str  # "" is the core group
    version: str
    api: str = "CustomObjectsApi"  # the client's class for it, and its method to list across namespaces
    method: str = "list_cluster_custom_object"
    optional: bool = False

    @property
    def path(self) -> str:
        return f"/api/{self.version}/{self.plural}" if not self.group else \
            f"/apis/{self.group}/{self.version}/{self.plural}"

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


# What a reading lists, cluster-wide (docs/scheduling/kubernetes-in-cluster.yaml grants exactly these).
# Custom resources: Kubeflow's TFJob (training-operator release-1.9, kubeflow.org/v1), KServe's
# InferenceService (serving.kserve.io/v1beta1) and Knative's Revision (serving.knative.dev/v1).
RESOURCES = (
    Resource("namespaces", "", "v1", "CoreV1Api", "list_namespace"),
    Resource("pods", "", "v1", "CoreV1Api", "list_pod_for_all_namespaces"),
    Resource("services", "", "v1", "CoreV1Api", "list_service_for_all_namespaces"),
    Resource("endpointslices", "discovery.k8s.io", "v1", "DiscoveryV1Api", "list_endpoint_slice_for_all_namespaces"),
    Resource("networkpolicies", "networking.k8s.io", "v1", "NetworkingV1Api", "list_network_policy_for_all_namespaces"),
    Resource("tfjobs", "kubeflow.org", "v1", optional=True),
    Resource("inferenceservices", "serving.kserve.io", "v1beta1", optional=True),
    Resource("revisions", "serving.knative.dev", "v1", optional=True),
)


@dataclass(frozen=True)
class Access:
    """Where credentials come from. The defaults are the process's own; tests give files and an environment
    of their own (the in-cluster loader's token_filename, cert_filename and environ parameters)."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    token_file: str = f"{SERVICE_ACCOUNT}/token"
    ca_file: str = f"{SERVICE_ACCOUNT}/ca.crt"

    def kubeconfig(self) -> str | None:
        """KUBECONFIG (a list of files, merged by the client as kubectl does), else ~/.kube/config if it
        exists. Read from the environment at each call: the client's own default is fixed at import."""
        listed = self.environ.get("KUBECONFIG")
        if listed:
            return listed
        home = self.environ.get("HOME") or os.path.expanduser("~")
        default = os.path.join(home, ".kube", "config")
        return default if os.path.isfile(default) else None


def connect(access: Access | None = None) -> tuple[Any, str]:
    """(an ApiClient, what it is for messages: the server and where its credentials came from)."""
    import yaml
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    access = access or Access()
    configuration = client.Configuration()
    kubeconfig = access.kubeconfig()
    try:
        if kubeconfig is not None:
            # persist_config=False: the client would otherwise write refreshed tokens back into the file.
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration,
                                    persist_config=False)
            origin = f"kubeconfig {kubeconfig}"
        elif access.environ.get("KUBERNETES_SERVICE_HOST"):
            from kubernetes.config.incluster_config import InClusterConfigLoader

            InClusterConfigLoader(token_filename=access.token_file, cert_filename=access.ca_file,
                                  environ=access.environ).load_and_set(configuration)
            origin = "the pod's service account"
        else:
            raise UsageError("k8s: reads the live API, but there is no kubeconfig (KUBECONFIG, ~/.kube/config) "
                             "and this is not a pod (KUBERNETES_SERVICE_HOST is not set); or read a snapshot: "
                             "k8s:FILE (kubectl get namespaces,pods,services,endpointslices,networkpolicies -A "
                             "-o json > cluster.json)")
    except ConfigException as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig is not None else "the in-cluster service account"
        raise UsageError(f"k8s: {where}: {_one_line(str(exc))}") from None
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as exc:  # not YAML, a bad CA file...
        where = f"kubeconfig {kubeconfig}" if kubeconfig is not None else "the in-cluster service account"
        raise UsageError(f"k8s: {where} cannot be used: {type(exc).__name__}: {_one_line(str(exc))}") from None
    # A failed call is reported, not retried: urllib3's default would try three more times per call, past
    # the deadline this module promises.
    configuration.retries = False
    return client.ApiClient(configuration), f"the API server at {configuration.host} ({origin})"


@dataclass
class _Reading:
    """What one reading may still spend: its deadline, and the bytes and items left of a snapshot's caps,
    counted over every page of every list so that nothing past them is held or parsed."""

    where: str
    total: float
    deadline: float
    connect_timeout: float
    read_timeout: float
    bytes_left: int
    items_left: int

    def timeout(self, resource: Resource) -> tuple[float, float]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise UsageError(f"k8s: reading {self.where} took longer than {self.total:g} s in all "
                             f"(stopped at {resource.qualified}): narrow it, or read a snapshot (k8s:FILE)")
        return min(self.connect_timeout, left), min(self.read_timeout, left)


def read_cluster(access: Access | None = None, *, total: float = TOTAL_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> Snapshot:
    """Every resource of RESOURCES, listed across all namespaces, as one Snapshot."""
    api, where = connect(access)
    reading = _Reading(where, total, time.monotonic() + total, connect_timeout, read_timeout,
                       bytes_left=MAX_FILE_BYTES, items_left=MAX_OBJECTS)
    documents: list[object] = []
    try:
        for resource in RESOURCES:
            documents += _list_all(api, resource, reading)
    finally:
        api.close()
    return snapshot_from_documents(documents, where)


_LIVE: dict[str, Snapshot] = {}


def live_snapshot() -> Snapshot:
    """The cluster as this process's credentials see it, read once per process: `scan k8s: --policy k8s:`
    lists the cluster once, and targets and verdicts come from the same moment."""
    if "cluster" not in _LIVE:
        _LIVE["cluster"] = read_cluster()
    return _LIVE["cluster"]


def _list_all(api: Any, resource: Resource, reading: _Reading) -> list[object]:
    """Every page of one list call. A page is a list object (`PodList`, `TFJobList`) whose items usually
    lack `kind`; the snapshot reader names them from the list's kind."""
    pages: list[object] = []
    token: str | None = None
    where = reading.where
    for _ in range(MAX_PAGES):
        page = _page(api, resource, reading, token)
        if page is None:
            return []
        items = page.get("items")
        reading.items_left -= len(items) if isinstance(items, list) else 0
        if reading.items_left < 0:
            raise UsageError(f"k8s: {where}: more than {MAX_OBJECTS} objects in all (at {resource.qualified}): "
                             "more than a snapshot holds")
        pages.append(page)
        meta = page.get("metadata") if isinstance(page.get("metadata"), dict) else {}
        token = meta.get("continue") if isinstance(meta.get("continue"), str) else None
        if not token:
            return pages
    raise UsageError(f"k8s: {where}: {resource.qualified} has more than {MAX_PAGES} pages of {PAGE_LIMIT}: "
                     "more objects than a snapshot holds")


def _page(api: Any, resource: Resource, reading: _Reading, token: str | None) -> dict[str, Any] | None:
    """One page, as the JSON the server sent (bounded); None when an optional resource does not exist or the
    credentials may not list it."""
    import urllib3
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    call = getattr(getattr(client, resource.api)(api), resource.method)
    args = (resource.group, resource.version, resource.plural) if resource.api == "CustomObjectsApi" else ()
    paging = {"limit": PAGE_LIMIT, **({"_continue": token} if token else {})}
    where = reading.where
    timeout = reading.timeout(resource)
    try:
        # Raw JSON, not model objects: the snapshot reader checks every field it uses, as for a file.
        response = call(*args, **paging, _preload_content=False, _request_timeout=timeout)
    except ApiException as exc:
        if exc.status == 404 and resource.optional:
            return None
        if exc.status == 403 and resource.optional:
            print(f"netaudit: warning: {_refusal(exc, resource, where)}; read without {resource.qualified}",
                  file=sys.stderr)
            return None
        raise UsageError(_refusal(exc, resource, where)) from None
    except AttributeError as exc:
        # The client wraps a TLS failure in an ApiException without a body, then fails decoding that body
        # (kubernetes/client/api_client.py __call_api): the ApiException is the context of the error.
        if not isinstance(exc.__context__, ApiException):
            raise
        raise UsageError(_refusal(exc.__context__, resource, where)) from None
    except urllib3.exceptions.HTTPError as exc:
        raise UsageError(f"k8s: cannot reach {where} (listing {resource.qualified}, deadline "
                         f"{timeout[0]:g} s to connect, {timeout[1]:g} s to answer): {_reason(exc)}") from None
    try:
        body = _body(response, resource, reading)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise UsageError(f"k8s: {where} stopped answering while listing {resource.qualified}: {_reason(exc)}") from None
    finally:
        response.release_conn()
    try:
        page = json.loads(body)
    except (ValueError, RecursionError):
        raise UsageError(f"k8s: {where}: the answer to listing {resource.qualified} is not JSON: not a Kubernetes "
                         "API server") from None
    if not isinstance(page, dict) or not str(page.get("kind", "")).endswith("List"):
        raise UsageError(f"k8s: {where}: the answer to listing {resource.qualified} is not a list object")
    return page


def _body(response: Any, resource: Resource, reading: _Reading) -> bytes:
    """The page's bytes, one recv at a time (read1), within the reading's deadline and what is left of its
    byte cap: a server that drips a byte per recv timeout, or sends without end, is stopped."""
    chunks: list[bytes] = []
    while True:
        reading.timeout(resource)
        chunk = response.read1(CHUNK)
        if not chunk:
            return b"".join(chunks)
        reading.bytes_left -= len(chunk)
        if reading.bytes_left < 0:
            raise UsageError(f"k8s: {reading.where}: the lists together are larger than {MAX_FILE_BYTES:,} bytes "
                             f"(at {resource.qualified}): more than a snapshot holds")
        chunks.append(chunk)


def _refusal(exc: Any, resource: Resource, where: str) -> str:
    """One line for an API error: for 401 and 403 what to grant, with the server's own Status message (it
    names the user, the verb and the resource)."""
    message = _status_message(exc)
    said = f": {message}" if message else ""
    if exc.status == 0:  # the client's wrapping of a TLS failure
        return f"k8s: cannot reach {where} (listing {resource.qualified}): TLS: {_one_line(str(exc.reason))}"
    if exc.status == 401:
        return (f"k8s: {where} refused the credentials (401 Unauthorized) when listing {resource.qualified}"
                f"{said}: the token or client certificate is not valid (expired, or of another cluster)")
    if exc.status == 403:
        group = resource.group or '""'
        return (f"k8s: {where} forbids listing {resource.qualified} (403 Forbidden){said}: grant the verbs get "
                f"and list on resource {resource.plural} in API group {group} cluster-wide (ClusterRole "
                "netaudit-reader, docs/scheduling/kubernetes-in-cluster.yaml)")
    if exc.status == 404:
        return f"k8s: {where} has no {resource.path} (404): not a Kubernetes API server, or a much older one"
    return f"k8s: {where} answered {exc.status} {_one_line(str(exc.reason or ''))} when listing {resource.qualified}{said}"


def _status_message(exc: Any) -> str:
    """The `message` of the meta/v1 Status the API server sends with an error, bounded and on one line."""
    body = exc.body
    if isinstance(body, bytes):
        body = body[:4096].decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return _one_line(message) if isinstance(message, str) else ""


def _reason(exc: BaseException) -> str:
    """The innermost cause urllib3 wraps: 'Connection refused', 'timed out', a certificate failure."""
    seen: BaseException = exc
    for _ in range(5):
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException):
            break
        seen = inner
    text = str(seen)
    if "timed out" in text.lower() or "timeout" in type(seen).__name__.lower():
        return f"timed out ({type(seen).__name__})"
    return f"{type(seen).__name__}: {_one_line(text)}"


def _one_line(text: str, limit: int = 300) -> str:
    text = terminal_safe(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."

