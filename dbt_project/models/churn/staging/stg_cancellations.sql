with

source as (

    select * from {{ source('churn_raw', 'cancellations') }}

),

renamed as (

    select
        cast(account_id as varchar) as account_id,
        cast(cancelled_at as timestamp) as cancelled_at,
        cast(cancelled_at as date) as cancelled_date,
        cast(channel as varchar) as channel,
        _source_file

    from source

),

earliest_cancellation as (

    -- an account cancels once; a re-delivered cancellation must not move the day it left
    select * from renamed
    qualify row_number() over (
        partition by account_id order by cancelled_at, _source_file
    ) = 1

)

select * from earliest_cancellation
