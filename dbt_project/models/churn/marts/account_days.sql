{#- The scoring population: one row per account and day it was active at the end of the day,
    from the first accounts snapshot that lists it (its signup day, or the first day the data
    covers for older accounts) through the day before its cancellation, up to the last
    snapshot loaded. An account cancelled on day c has no row for c or later. Plan and price
    are the latest snapshot's on or before the day (the day's own when it was delivered), so a
    row never uses anything known after its day. -#}
{%- set plan_ranks = {'basic': 1, 'standard': 2, 'premium': 3} -%}

with

account_snapshots as (

    select
        account_id,
        plan,
        monthly_price,
        signup_date,
        snapshot_date,
        {{ day_number('snapshot_date') }} as day_number

    from {{ ref('stg_accounts') }}

),

cancellations as (

    select
        account_id,
        {{ day_number('cancelled_date') }} as cancelled_day_number

    from {{ ref('stg_cancellations') }}

),

covered as (

    select max(day_number) as last_day_number from account_snapshots

),

account_spans as (

    select
        account_snapshots.account_id,
        min(account_snapshots.snapshot_date) as first_date,
        min(account_snapshots.day_number) as first_day_number,
        least(
            min(covered.last_day_number),
            coalesce(min(cancellations.cancelled_day_number) - 1, min(covered.last_day_number))
        ) as last_day_number

    from account_snapshots
    cross join covered
    left join cancellations
        on account_snapshots.account_id = cancellations.account_id
    group by account_snapshots.account_id

),

spine as (

    select
        account_id,
        first_date,
        first_day_number,
        unnest(range(first_day_number, last_day_number + 1)) as day_number

    from account_spans
    where first_day_number <= last_day_number

),

as_of_snapshot as (

    select
        spine.account_id,
        cast(
            spine.first_date + cast(spine.day_number - spine.first_day_number as integer) as date
        ) as snapshot_date,
        spine.day_number,
        account_snapshots.signup_date,
        account_snapshots.plan,
        account_snapshots.monthly_price

    from spine
    asof left join account_snapshots
        on spine.account_id = account_snapshots.account_id
        and spine.day_number >= account_snapshots.day_number

),

final as (

    select
        account_id,
        snapshot_date,
        signup_date,
        cast(date_diff('day', signup_date, snapshot_date) as integer) as tenure_days,
        plan,
        cast(case plan
            {%- for plan, rank in plan_ranks.items() %}
            when '{{ plan }}' then {{ rank }}
            {%- endfor %}
        end as integer) as plan_rank,
        monthly_price

    from as_of_snapshot

)

select * from final
