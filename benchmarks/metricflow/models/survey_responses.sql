-- kpibot's own table, never built by dbt (see dbt_project.yml)
select * from main.survey_responses
