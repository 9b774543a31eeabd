{#- Features plus the label. The label carries the time it became known (reported_at,
    report_date), so a training cutoff is applied when reading, not by rebuilding:
    a transaction counts as fraud for a model trained at cutoff c iff report_date < c. -#}
with

features as (

    select * from {{ ref('transaction_features') }}

),

fraud_reports as (

    select transaction_id, reported_at, report_date from {{ ref('stg_fraud_reports') }}

),

final as (

    select
        features.*,
        case when fraud_reports.transaction_id is null then 0 else 1 end as is_fraud,
        fraud_reports.reported_at,
        fraud_reports.report_date

    from features
    left join fraud_reports
        on features.transaction_id = fraud_reports.transaction_id

)

select * from final
