"""Cross-sell and up-sell (seed 003, '5/ Cross & Up Selling Metrics').

'Potential: Total amount of Cross & Upselling opportunities, total amount of converted
opportunities. Adoption: Total penetration of users converted to value-added service X (Y or Z).'

Every KPI here is data (metrics/kpis/data/upsell.yml); add-on penetration reads every (active
customer, product) pair beside the pairs held (``pairs``).
"""

from __future__ import annotations

from metrics.kpis import packaged

METRICS = packaged.load("upsell.yml")
