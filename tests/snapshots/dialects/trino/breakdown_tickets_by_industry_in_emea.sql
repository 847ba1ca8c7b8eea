SELECT w.w, customers.industry AS grp, count(*) AS n, count(*) AS _rows
FROM (SELECT tickets.ticket_id AS ticket_id, tickets.customer_id AS customer_id, tickets.opened_at AS opened_at, tickets.first_response_at AS first_response_at, tickets.resolved_at AS resolved_at, tickets.reopened AS reopened, tickets.escalated AS escalated, tickets.agent_replies AS agent_replies, tickets.category AS category, tickets.priority AS priority, tickets.channel AS channel, CASE WHEN (tickets.opened_at < :we_1) THEN 1 ELSE 0 END AS _w
FROM tickets
WHERE tickets.opened_at >= :ws_1 AND tickets.opened_at < :we_0 AND tickets.opened_at >= :lo_ws AND tickets.opened_at < :hi_we) AS tickets JOIN (SELECT :param_1 AS w, :ws_0 AS ws, :we_0 AS we, :ds_0 AS ds, :de_0 AS de UNION ALL SELECT :param_2 AS w, :ws_1 AS ws, :we_1 AS we, :ds_1 AS ds, :de_1 AS de) AS w ON tickets._w = w.w LEFT OUTER JOIN customers ON tickets.customer_id = customers.customer_id
WHERE lower(customers.region) = :lower_1 GROUP BY w.w, customers.industry ORDER BY count(*) DESC
LIMIT :param_3
