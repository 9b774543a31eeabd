{#- Terminal history for every day a terminal took payments, as of the start of that day.
    Two views of the same history, each over windows of w whole days:
    - delayed (terminal_*, the handbook's): the w days ending `terminal_delay_days` days
      before D: days D - delay - w .. D - delay - 1 (for delay 7: D-7-w .. D-8);
    - recent (terminal_recent_*): the w days just before D, D - w .. D - 1, so a fraud counts
      as soon as its report is known instead of a week later.
    A fraud counts only if its report date is before D: the information rule shared by all
    features (a report is usable for a transaction iff report_date < tx_date). Both views read
    at most delay + max(windows) days back, the history serving keeps for a terminal. -#}
{%- set delay = var('terminal_delay_days') | int -%}
{%- set windows = var('terminal_windows_days') -%}
{%- set widest = windows | max -%}
{#- (column prefix, days skipped before D) of each view -#}
{%- set views = [('terminal_', delay), ('terminal_recent_', 0)] -%}

with

transactions as (

    select transaction_id, terminal_id, tx_date from {{ ref('stg_transactions') }}

),

fraud_reports as (

    select transaction_id, report_date from {{ ref('stg_fraud_reports') }}

),

terminal_days as (

    select
        terminal_id,
        tx_date,
        date_diff('day', date '1970-01-01', tx_date) as day_number,
        count(*) as nb_tx

    from transactions
    group by terminal_id, tx_date

),

-- frauds per terminal, transaction day and report day: when a fraud becomes usable
-- depends on its report day, so report days are kept apart
terminal_frauds as (

    select
        transactions.terminal_id,
        date_diff('day', date '1970-01-01', transactions.tx_date) as fraud_day_number,
        fraud_reports.report_date,
        count(*) as nb_frauds

    from fraud_reports
    inner join transactions
        on fraud_reports.transaction_id = transactions.transaction_id
    group by all

),

windowed_tx_counts as (

    select
        terminal_id,
        tx_date,
        day_number,
        nb_tx,
        {%- for prefix, skip in views %}
        {%- set outer_loop = loop %}
        {%- for w in windows %}
        coalesce(sum(nb_tx) over (
            partition by terminal_id order by day_number
            range between {{ skip + w }} preceding and {{ skip + 1 }} preceding
        ), 0) as {{ prefix }}nb_tx_{{ w }}day{{ "," if not (loop.last and outer_loop.last) }}
        {%- endfor %}
        {%- endfor %}

    from terminal_days

),

-- frauds reported before D among the terminal's payments of the widest window of each view
windowed_fraud_counts as (

    select
        terminal_days.terminal_id,
        terminal_days.tx_date,
        {%- for prefix, skip in views %}
        {%- set outer_loop = loop %}
        {%- for w in windows %}
        coalesce(sum(terminal_frauds.nb_frauds) filter (
            where terminal_frauds.fraud_day_number
                between terminal_days.day_number - {{ skip + w }}
                and terminal_days.day_number - {{ skip + 1 }}
        ), 0) as {{ prefix }}nb_fraud_{{ w }}day{{ "," if not (loop.last and outer_loop.last) }}
        {%- endfor %}
        {%- endfor %}

    from terminal_days
    inner join terminal_frauds
        on terminal_days.terminal_id = terminal_frauds.terminal_id
        and terminal_frauds.fraud_day_number
            between terminal_days.day_number - {{ delay + widest }}
            and terminal_days.day_number - 1
        and terminal_frauds.report_date < terminal_days.tx_date
    group by terminal_days.terminal_id, terminal_days.tx_date

),

final as (

    select
        windowed_tx_counts.terminal_id,
        windowed_tx_counts.tx_date,
        windowed_tx_counts.nb_tx,
        {%- for prefix, skip in views %}
        {%- set outer_loop = loop %}
        {%- for w in windows %}
        windowed_tx_counts.{{ prefix }}nb_tx_{{ w }}day,
        coalesce(windowed_fraud_counts.{{ prefix }}nb_fraud_{{ w }}day, 0)
            as {{ prefix }}nb_fraud_{{ w }}day,
        case
            when windowed_tx_counts.{{ prefix }}nb_tx_{{ w }}day = 0 then 0.0
            else coalesce(windowed_fraud_counts.{{ prefix }}nb_fraud_{{ w }}day, 0)
                / windowed_tx_counts.{{ prefix }}nb_tx_{{ w }}day
        end as {{ prefix }}risk_{{ w }}day{{ "," if not (loop.last and outer_loop.last) }}
        {%- endfor %}
        {%- endfor %}

    from windowed_tx_counts
    left join windowed_fraud_counts
        on windowed_tx_counts.terminal_id = windowed_fraud_counts.terminal_id
        and windowed_tx_counts.tx_date = windowed_fraud_counts.tx_date

)

select * from final
