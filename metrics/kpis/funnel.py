"""Lead funnel and marketing return (seed 003, sections 3 and 7).

'Amount of new leads per week, avg. potential of each lead. Amount of new marketing qualified
leads (MQL) per week, the amount of new sales qualified leads (SQL) per week … Percentage of
lead that converts to MQL and then to SQL … Amount of leads per $ invested. $ earned per $
invested. Lead to customer conversion. time from the first touchpoint to MQL, SQL, and
customer conversion.'

Every KPI here is data (metrics/kpis/data/funnel.yml), the unions of tables too (time to
convert over the stages reached; marketing return and leads per spend over spend per channel).
A "per week" value over any period is the weekly average: count ÷ (days in the period ÷ 7).
Conversion rates follow the cohort of leads created in the period (recent cohorts are still
converting); time to convert follows the events (an MQL, SQL or conversion in the period).
Lead ``source`` and marketing channels share their names (``paid_search``, ``events`` …).
"""

from __future__ import annotations

from metrics.kpis import packaged

LEAD_DIMS = ("source",)


METRICS = packaged.load("funnel.yml")  # every funnel KPI is data, unions of tables too
