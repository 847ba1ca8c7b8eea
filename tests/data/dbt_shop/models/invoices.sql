select * from {{ ref('raw_invoices') }}
