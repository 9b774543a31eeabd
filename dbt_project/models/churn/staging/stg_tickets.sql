with

source as (

    select * from {{ source('churn_raw', 'tickets') }}

),

renamed as (

    select
        cast(ticket_id as varchar) as ticket_id,
        cast(account_id as varchar) as account_id,
        cast(opened_at as timestamp) as opened_at,
        cast(opened_at as date) as opened_date,
        cast(category as varchar) as category,
        _source_file

    from source

)

select * from renamed
