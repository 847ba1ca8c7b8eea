SELECT tickets._w AS w, median(((julianday(tickets.first_response_at) - julianday(tickets.opened_at)) * 86400.0) / (? + 0.0)) AS median, count(tickets.first_response_at) AS n, count(*) AS _rows
FROM (SELECT tickets.ticket_id AS ticket_id, tickets.customer_id AS customer_id, tickets.opened_at AS opened_at, tickets.first_response_at AS first_response_at, tickets.resolved_at AS resolved_at, tickets.reopened AS reopened, tickets.escalated AS escalated, tickets.agent_replies AS agent_replies, tickets.category AS category, tickets.priority AS priority, tickets.channel AS channel, CASE WHEN (tickets.opened_at < ?) THEN 1 ELSE 0 END AS _w
FROM tickets
WHERE tickets.opened_at >= ? AND tickets.opened_at < ? AND tickets.opened_at >= ? AND tickets.opened_at < ?) AS tickets
WHERE tickets._w IS NOT NULL GROUP BY tickets._w
