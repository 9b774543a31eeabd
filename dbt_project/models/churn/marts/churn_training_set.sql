{#- account_features plus the label: did the account cancel in the next
    `churn_label_horizon_days` days (d+1 .. d+30)? The label of day d is final at the end of
    day d+30 (label_date), for positives and negatives alike. Every row is kept: a row whose
    label_date is after the newest cancellations loaded has a label that may still turn to 1,
    and the pipeline decides which rows are mature. -#}
{%- set horizon = var('churn_label_horizon_days') | int -%}

with

features as (

    select * from {{ ref('account_features') }}

),

cancellations as (

    select account_id, cancelled_date from {{ ref('stg_cancellations') }}

),

final as (

    select
        features.*,
        case
            when cancellations.cancelled_date
                between features.snapshot_date + 1 and features.snapshot_date + {{ horizon }}
                then 1
            else 0
        end as churned_{{ horizon }}d,
        cast(features.snapshot_date + {{ horizon }} as date) as label_date

    from features
    left join cancellations
        on features.account_id = cancellations.account_id

)

select * from final
