{#- The churn model's inputs: one row per account_days row (account d, scored after day d
    ended), each feature using only events up to the end of day d. A w-day window holds the
    whole days d-w+1 .. d, day d included. Windows run over the account's own timeline: every
    day it has a row or any activity, ordered by day number, so `range between w - 1
    preceding and current row` is exactly those w days. What happens after day d (later
    sessions, payments, tickets, snapshots, the cancellation itself) never changes a row. -#}
{%- set usage_windows = var('churn_usage_windows_days') -%}
{%- set shortest = usage_windows | min -%}
{%- set widest = usage_windows | max -%}
{%- set billing_window = var('churn_billing_window_days') | int -%}
{%- set ticket_window = var('churn_ticket_window_days') | int -%}
{%- set intent_window = var('churn_intent_window_days') | int -%}
{%- set never_days = var('churn_never_days') | int -%}

with

account_days as (

    select
        *,
        {{ day_number('snapshot_date') }} as day_number

    from {{ ref('account_days') }}

),

activity as (

    select
        *,
        {{ day_number('activity_date') }} as day_number

    from {{ ref('int_account_days_aggregated') }}

),

-- every day the account has a row or did something: activity before its first row (days
-- before the first snapshot loaded) still counts in the windows
timeline as (

    select account_id, day_number from account_days
    union
    select account_id, day_number from activity

),

windowed_activity as (

    select
        timeline.account_id,
        timeline.day_number,
        {%- for w in usage_windows %}
        sum(coalesce(activity.minutes, 0.0)) over last_{{ w }}_days as minutes_{{ w }}d,
        sum(coalesce(activity.sessions, 0)) over last_{{ w }}_days as sessions_{{ w }}d,
        {%- endfor %}
        sum(coalesce(activity.mobile_sessions, 0)) over last_{{ widest }}_days
            as mobile_sessions_{{ widest }}d,
        sum(coalesce(activity.failed_payments, 0)) over last_{{ billing_window }}_days
            as failed_payments_{{ billing_window }}d,
        {%- for prefix in ['', 'technical_', 'billing_'] %}
        sum(coalesce(activity.{{ prefix }}tickets, 0)) over last_{{ ticket_window }}_days
            as {{ prefix }}tickets_{{ ticket_window }}d,
        {%- endfor %}
        sum(coalesce(activity.cancellation_intent_tickets, 0)) over last_{{ intent_window }}_days
            as cancellation_intent_tickets_{{ intent_window }}d,
        max(case when activity.sessions > 0 then timeline.day_number end)
            over history as last_session_day_number,
        max(case when activity.failed_payments > 0 then timeline.day_number end)
            over history as last_failed_payment_day_number

    from timeline
    left join activity
        on timeline.account_id = activity.account_id
        and timeline.day_number = activity.day_number
    window
        {%- for w in (usage_windows + [billing_window, ticket_window, intent_window]) | unique %}
        last_{{ w }}_days as (
            partition by timeline.account_id order by timeline.day_number
            range between {{ w - 1 }} preceding and current row
        ),
        {%- endfor %}
        history as (
            partition by timeline.account_id order by timeline.day_number
            rows between unbounded preceding and current row
        )

),

-- the monthly price at the end of day d-w (or on the account's first row, if later)
priced as (

    select
        account_id,
        day_number,
        first_value(monthly_price) over (
            partition by account_id order by day_number
            range between {{ billing_window }} preceding and current row
        ) as monthly_price_before

    from account_days

),

final as (

    select
        account_days.account_id || '|' || cast(account_days.snapshot_date as varchar)
            as snapshot_id,
        account_days.account_id,
        account_days.snapshot_date,
        cast(account_days.snapshot_date as timestamp) + interval 1 day as snapshot_at,
        account_days.tenure_days,
        account_days.plan_rank,
        account_days.monthly_price,
        case
            when priced.monthly_price_before > 0
                then greatest(account_days.monthly_price / priced.monthly_price_before - 1, 0.0)
            else 0.0
        end as price_increase_{{ billing_window }}d,
        {%- for w in usage_windows %}
        windowed_activity.minutes_{{ w }}d,
        {%- endfor %}
        {%- for w in usage_windows %}
        cast(windowed_activity.sessions_{{ w }}d as integer) as sessions_{{ w }}d,
        {%- endfor %}
        -- nothing watched in the long window: no trend, 1.0 (as usual)
        case
            when windowed_activity.minutes_{{ widest }}d > 0
                then windowed_activity.minutes_{{ shortest }}d
                    / (windowed_activity.minutes_{{ widest }}d * {{ shortest }} / {{ widest }})
            else 1.0
        end as usage_trend_{{ shortest }}d,
        cast(coalesce(
            account_days.day_number - windowed_activity.last_session_day_number,
            account_days.tenure_days
        ) as integer) as days_since_last_session,
        case
            when windowed_activity.sessions_{{ widest }}d > 0
                then windowed_activity.mobile_sessions_{{ widest }}d
                    / windowed_activity.sessions_{{ widest }}d
            else 0.0
        end as mobile_share_{{ widest }}d,
        cast(windowed_activity.failed_payments_{{ billing_window }}d as integer)
            as failed_payments_{{ billing_window }}d,
        cast(coalesce(
            account_days.day_number - windowed_activity.last_failed_payment_day_number,
            {{ never_days }}
        ) as integer) as days_since_failed_payment,
        {%- for prefix in ['', 'technical_', 'billing_'] %}
        cast(windowed_activity.{{ prefix }}tickets_{{ ticket_window }}d as integer)
            as {{ prefix }}tickets_{{ ticket_window }}d,
        {%- endfor %}
        cast(windowed_activity.cancellation_intent_tickets_{{ intent_window }}d as integer)
            as cancellation_intent_tickets_{{ intent_window }}d

    from account_days
    inner join windowed_activity
        on account_days.account_id = windowed_activity.account_id
        and account_days.day_number = windowed_activity.day_number
    inner join priced
        on account_days.account_id = priced.account_id
        and account_days.day_number = priced.day_number

)

select * from final
