"""Scheduled KPI digests and KPI alerts: commands, state, delivery, and the scheduler.

* :mod:`.commands` — ``/kpi digest …``, ``/kpi alert …`` (``handle``) and ``kpibot digest …``
  (``cli``).
* :mod:`.scheduler` — :class:`~.scheduler.ScheduleService` (the logic, driven by explicit
  times) and ``start(client)``, the APScheduler wiring for ``kpibot serve``.
* :mod:`.digests`, :mod:`.alerts` — what is posted, and when.
* :mod:`.delivery` — the exactly-once delivery log.
* :mod:`.rules_file` — rules kept in YAML (``KPI_RULES_FILE``).
"""
