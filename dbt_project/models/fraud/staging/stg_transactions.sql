with

source as (

    select * from {{ source('raw', 'transactions') }}

),

card_keys as (

    {{ pseudonyms('source', 'card_number') }}

),

renamed as (

    select
        cast(source.transaction_id as varchar) as transaction_id,
        cast(source.tx_datetime as timestamp) as tx_datetime,
        cast(source.tx_datetime as date) as tx_date,
        card_keys.pseudonym as card_key,
        cast(source.terminal_id as varchar) as terminal_id,
        cast(source.amount as double) as amount,
        source._source_file

    from source
    left join card_keys
        on source.card_number = card_keys.original_value

)

select * from renamed
