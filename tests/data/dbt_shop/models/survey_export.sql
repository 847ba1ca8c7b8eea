select * from {{ ref('raw_survey_export') }}
