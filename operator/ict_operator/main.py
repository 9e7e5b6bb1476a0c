"""`ict operator`: run the kopf operator with the settings from flags and environment."""

from __future__ import annotations

import argparse
import logging

import kopf

from ict_operator.settings import OperatorSettings, settings_from

log = logging.getLogger("ict.operator")


def run(args: argparse.Namespace) -> int:
    """Runs until SIGTERM/SIGINT. Raises ValueError for bad settings (exit 2 in the CLI)."""
    settings = settings_from(args, verbose=args.verbose)
    import ict_operator.handlers  # noqa: F401  (registers the handlers with kopf)

    # kopf installs its own log handler; the CLI's would print every line a second time.
    logging.getLogger().handlers.clear()
    kopf.configure(
        debug=settings.verbose,
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    log.info("%s", describe(settings))
    kopf.run(
        standalone=True,  # one replica (Recreate): no peering objects to need RBAC for
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
        ),
        memo=kopf.Memo(settings=settings),
    )
    return 0


def describe(settings: OperatorSettings) -> str:
    scope = "all namespaces" if settings.clusterwide else ", ".join(settings.namespaces)
    return (
        f"ict operator: watching {scope}; trainer image {settings.trainer_image!r}; "
        f"GPU resource {settings.gpu_resource!r}; health on :{settings.health_port}/healthz"
    )
