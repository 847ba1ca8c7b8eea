select * from {{ ref('raw_accounts') }}
