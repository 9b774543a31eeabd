with

quarantine_records as (

    select * from {{ ref('stg_churn_quarantine_records') }}

),

final as (

    select
        source,
        partition_date,
        source_file,
        line_number,
        reason,
        row_sha256,
        quarantined_at

    from quarantine_records

)

select * from final
