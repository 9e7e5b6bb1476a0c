"""A tiny kopf operator for the emulated cluster's own test: it marks new trainings Accepted."""

import kopf


@kopf.on.create("littledata.dev", "v1alpha1", "imageclassifiertrainings")
def accept(spec, patch, **_):
    patch.status["phase"] = "Accepted"
    patch.status["strategy"] = spec.get("strategy", "")
