"""Product reliability (seed 003, '1/ Product Technical Performance Metrics').

'Defects: number of new defects, the average time to solve one (in both cases segment &
qualified by criticality). Down time: frequency, length, impact.'

Every KPI here is data (metrics/kpis/data/reliability.yml). Downtime and uptime read the
named ``outages`` rows (metrics/kpis/rows.py): a ``degradation`` is not downtime, an incident
is clipped to the window it overlaps, and time when several outages overlap is down once.
"""

from __future__ import annotations

from metrics.kpis import packaged

METRICS = packaged.load("reliability.yml")
