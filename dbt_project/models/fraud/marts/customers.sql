with

customer_snapshots as (

    select * from {{ ref('stg_customers') }}

),

latest_snapshot as (

    select
        customer_key,
        card_key,
        age_band,
        signup_date,
        snapshot_date,
        updated_at

    from customer_snapshots
    qualify row_number() over (
        partition by customer_key order by snapshot_date desc, updated_at desc
    ) = 1

)

select * from latest_snapshot
