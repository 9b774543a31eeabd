{#- What each account did on each day it did anything: viewing, failed payments, tickets.
    One row per account and day with at least one session, failed payment or ticket; the
    windowed features of account_features add these days up. -#}
with

usage_sessions as (

    select account_id, session_date as activity_date, minutes, device
    from {{ ref('stg_usage_sessions') }}

),

billing_events as (

    select account_id, event_date as activity_date, event_type
    from {{ ref('stg_billing_events') }}

),

tickets as (

    select account_id, opened_date as activity_date, category
    from {{ ref('stg_tickets') }}

),

usage_days as (

    select
        account_id,
        activity_date,
        count(*) as sessions,
        sum(minutes) as minutes,
        count(*) filter (where device = 'mobile') as mobile_sessions

    from usage_sessions
    group by account_id, activity_date

),

failed_payment_days as (

    -- a failed retry is a failed payment too
    select
        account_id,
        activity_date,
        count(*) as failed_payments

    from billing_events
    where event_type = 'payment_failed'
    group by account_id, activity_date

),

ticket_days as (

    select
        account_id,
        activity_date,
        count(*) as tickets,
        count(*) filter (where category = 'technical') as technical_tickets,
        count(*) filter (where category = 'billing') as billing_tickets,
        count(*) filter (where category = 'cancellation_intent') as cancellation_intent_tickets

    from tickets
    group by account_id, activity_date

),

active_days as (

    select account_id, activity_date from usage_days
    union
    select account_id, activity_date from failed_payment_days
    union
    select account_id, activity_date from ticket_days

),

final as (

    select
        active_days.account_id,
        active_days.activity_date,
        cast(coalesce(usage_days.sessions, 0) as integer) as sessions,
        coalesce(usage_days.minutes, 0.0) as minutes,
        cast(coalesce(usage_days.mobile_sessions, 0) as integer) as mobile_sessions,
        cast(coalesce(failed_payment_days.failed_payments, 0) as integer) as failed_payments,
        cast(coalesce(ticket_days.tickets, 0) as integer) as tickets,
        cast(coalesce(ticket_days.technical_tickets, 0) as integer) as technical_tickets,
        cast(coalesce(ticket_days.billing_tickets, 0) as integer) as billing_tickets,
        cast(coalesce(ticket_days.cancellation_intent_tickets, 0) as integer)
            as cancellation_intent_tickets

    from active_days
    left join usage_days
        on active_days.account_id = usage_days.account_id
        and active_days.activity_date = usage_days.activity_date
    left join failed_payment_days
        on active_days.account_id = failed_payment_days.account_id
        and active_days.activity_date = failed_payment_days.activity_date
    left join ticket_days
        on active_days.account_id = ticket_days.account_id
        and active_days.activity_date = ticket_days.activity_date

)

select * from final
