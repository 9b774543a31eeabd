with

source as (

    select * from {{ source('churn_raw', 'quarantine_records') }}

),

renamed as (

    select
        regexp_extract(
            filename, 'quarantine/([^/]+)/date=[^/]*/records\.parquet$', 1
        ) as source,
        cast(partition_date as date) as partition_date,
        cast(source_file as varchar) as source_file,
        cast(line_number as bigint) as line_number,
        cast(reason as varchar) as reason,
        cast(row_sha256 as varchar) as row_sha256,
        cast(quarantined_at as timestamptz) as quarantined_at

    from source

)

select * from renamed
