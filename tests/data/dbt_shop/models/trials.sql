select * from {{ ref('raw_trials') }}
