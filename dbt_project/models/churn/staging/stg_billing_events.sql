with

source as (

    select * from {{ source('churn_raw', 'billing') }}

),

renamed as (

    select
        cast(billing_event_id as varchar) as billing_event_id,
        cast(account_id as varchar) as account_id,
        cast(event_at as timestamp) as event_at,
        cast(event_at as date) as event_date,
        cast(event_type as varchar) as event_type,
        cast(amount as double) as amount,
        _source_file

    from source

)

select * from renamed
