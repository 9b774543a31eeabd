with

source as (

    select * from {{ source('churn_raw', 'usage') }}

),

renamed as (

    select
        cast(session_id as varchar) as session_id,
        cast(account_id as varchar) as account_id,
        cast(started_at as timestamp) as started_at,
        cast(started_at as date) as session_date,
        cast(minutes as double) as minutes,
        cast(device as varchar) as device,
        _source_file

    from source

)

select * from renamed
