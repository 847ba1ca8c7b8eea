SELECT w.w, sum(subscriptions.mrr) AS mrr, count(*) AS _rows
FROM subscriptions JOIN (SELECT :param_1 AS w, :ws_0 AS ws, :we_0 AS we, :ds_0 AS ds, :de_0 AS de UNION ALL SELECT :param_2 AS w, :ws_1 AS ws, :we_1 AS we, :ds_1 AS ds, :de_1 AS de) AS w ON subscriptions.started_at < w.we AND (subscriptions.ended_at IS NULL OR subscriptions.ended_at >= w.we) GROUP BY w.w
