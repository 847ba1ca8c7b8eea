SELECT survey_responses._w AS w, count(*) AS n, sum(CASE WHEN (survey_responses.score >= %(score_1)s) THEN %(param_1)s ELSE %(param_2)s END) AS promoters, sum(CASE WHEN (survey_responses.score <= %(score_2)s) THEN %(param_3)s ELSE %(param_4)s END) AS detractors, count(*) AS _rows
FROM (SELECT survey_responses.response_id AS response_id, survey_responses.customer_id AS customer_id, survey_responses.responded_at AS responded_at, survey_responses.survey AS survey, survey_responses.score AS score, survey_responses.touchpoint AS touchpoint, survey_responses.comment AS comment, CASE WHEN (survey_responses.responded_at < %(we_1)s) THEN 1 ELSE 0 END AS _w
FROM survey_responses
WHERE survey_responses.responded_at >= %(ws_1)s AND survey_responses.responded_at < %(we_0)s AND survey_responses.survey = %(survey_1)s AND survey_responses.responded_at >= %(lo_ws)s AND survey_responses.responded_at < %(hi_we)s) AS survey_responses
WHERE survey_responses._w IS NOT NULL GROUP BY survey_responses._w
