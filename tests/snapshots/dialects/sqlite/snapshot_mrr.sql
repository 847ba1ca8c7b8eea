SELECT w.w, sum(subscriptions.mrr) AS mrr, count(*) AS _rows
FROM subscriptions JOIN (SELECT ? AS w, ? AS ws, ? AS we, ? AS ds, ? AS de UNION ALL SELECT ? AS w, ? AS ws, ? AS we, ? AS ds, ? AS de) AS w ON subscriptions.started_at < w.we AND (subscriptions.ended_at IS NULL OR subscriptions.ended_at >= w.we) GROUP BY w.w
