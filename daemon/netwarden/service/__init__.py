"""Running netwarden as a service: systemd notifications, health, status HTTP, installation.

* :mod:`.notify`: ``sd_notify`` over ``$NOTIFY_SOCKET`` (READY, RELOADING, STOPPING, WATCHDOG).
* :mod:`.health`: liveness/readiness of the pipeline and the watchdog that depends on them.
* :mod:`.http`: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.
* :mod:`.install`: install the unit, config, model and directories into a root directory.
"""
