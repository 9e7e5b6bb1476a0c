"""The ict operator: ImageClassifierTraining resources become trainer Jobs.

Layout: `settings` (what the operator is told), `validation` (spec rules that only hold on a
cluster), `builders` (the Job, pure), `progress` (the trainer's JSON lines), `observe` (Job and
pods -> status, pure), `kube` (the one module that talks to the API server), `handlers` (kopf,
thin), `main` (the `ict operator` command).
"""
