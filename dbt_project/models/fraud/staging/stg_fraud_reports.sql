with

source as (

    select * from {{ source('raw', 'fraud_reports') }}

),

card_keys as (

    {{ pseudonyms('source', 'card_number') }}

),

renamed as (

    select
        cast(source.transaction_id as varchar) as transaction_id,
        card_keys.pseudonym as card_key,
        cast(source.reported_at as timestamp) as reported_at,
        cast(source.reported_at as date) as report_date

    from source
    left join card_keys
        on source.card_number = card_keys.original_value

),

earliest_report as (

    -- a transaction disputed twice is one fraud, known from its first report on
    select * from renamed
    qualify row_number() over (
        partition by transaction_id order by reported_at, card_key
    ) = 1

)

select * from earliest_report
