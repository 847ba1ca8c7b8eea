-- MetricFlow wants a time spine declared; none of the benchmark's queries reads it (never built)
select cast(range as date) as date_day from range(date '2020-01-01', date '2030-01-01', interval 1 day)
