SELECT p.w AS w, customers.industry AS grp, CAST(sum(p._rows) AS BIGINT) AS n, CAST(sum(p._rows) AS BIGINT) AS _rows
FROM (SELECT tickets._w AS w, tickets.customer_id AS _ck, count(*) AS _rows
FROM (SELECT tickets.ticket_id AS ticket_id, tickets.customer_id AS customer_id, tickets.opened_at AS opened_at, tickets.first_response_at AS first_response_at, tickets.resolved_at AS resolved_at, tickets.reopened AS reopened, tickets.escalated AS escalated, tickets.agent_replies AS agent_replies, tickets.category AS category, tickets.priority AS priority, tickets.channel AS channel, CASE WHEN (tickets.opened_at < :we_1) THEN 1 ELSE 0 END AS _w
FROM tickets
WHERE tickets.opened_at >= :ws_1 AND tickets.opened_at < :we_0 AND tickets.opened_at >= :lo_ws AND tickets.opened_at < :hi_we) AS tickets
WHERE tickets._w IS NOT NULL AND tickets.customer_id IN (SELECT customers.customer_id
FROM customers
WHERE lower(customers.region) = :lower_1) GROUP BY tickets._w, tickets.customer_id) AS p LEFT OUTER JOIN customers ON p._ck = customers.customer_id
WHERE lower(customers.region) = :lower_1 GROUP BY p.w, customers.industry ORDER BY CAST(sum(p._rows) AS BIGINT) DESC
LIMIT :param_1
