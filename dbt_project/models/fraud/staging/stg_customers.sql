with

source as (

    select * from {{ source('raw', 'customers') }}

),

customer_keys as (

    {{ pseudonyms('source', 'customer_id') }}

),

card_keys as (

    {{ pseudonyms('source', 'card_number') }}

),

renamed as (

    -- name, email, phone, address and date of birth are dropped here on purpose
    select
        customer_keys.pseudonym as customer_key,
        card_keys.pseudonym as card_key,
        {{ age_band('source.date_of_birth', 'cast(source."date" as date)') }} as age_band,
        cast(source.signup_date as date) as signup_date,
        cast(source."date" as date) as snapshot_date,
        cast(source.updated_at as timestamp) as updated_at

    from source
    left join customer_keys
        on source.customer_id = customer_keys.original_value
    left join card_keys
        on source.card_number = card_keys.original_value

)

select * from renamed
