SELECT w.w, sum(subscriptions.mrr) AS mrr, count(*) AS _rows
FROM subscriptions JOIN (SELECT %(param_1)s AS w, %(ws_0)s AS ws, %(we_0)s AS we, %(ds_0)s AS ds, %(de_0)s AS de UNION ALL SELECT %(param_2)s AS w, %(ws_1)s AS ws, %(we_1)s AS we, %(ds_1)s AS ds, %(de_1)s AS de) AS w ON subscriptions.started_at < w.we AND (subscriptions.ended_at IS NULL OR subscriptions.ended_at >= w.we) GROUP BY w.w
