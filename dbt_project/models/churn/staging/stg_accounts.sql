with

source as (

    select * from {{ source('churn_raw', 'accounts') }}

),

renamed as (

    -- name, email, address and iban are dropped here on purpose
    select
        cast(account_id as varchar) as account_id,
        cast(plan as varchar) as plan,
        cast(monthly_price as double) as monthly_price,
        cast(signup_date as date) as signup_date,
        cast(updated_at as timestamp) as updated_at,
        cast("date" as date) as snapshot_date,
        _source_file

    from source

)

select * from renamed
