{#- The handbook's baseline features (Le Borgne et al., Fraud Detection Handbook, ch. 3),
    one row per transaction, using only what was known when the payment was made.
    Card windows are time-based, (t - w days, t], like pandas rolling('<w>D') on the datetime:
    ordered by epoch microseconds, a row w days (w * 86 400 000 000 us) earlier is out,
    one a microsecond later is in. Payments of a card at the very same instant are peers and
    count for each other (pandas would count only the ones before it in row order).
    Windows are partitioned by a 64-bit hash of card_key rather than the 64-character key:
    sorting integers is several times faster, and the test
    assert_card_key_hashes_are_distinct guarantees no two cards share a hash.
    The card's earlier payments (card_amount_ratio_*, card_seconds_since_last_tx) are those of
    the widest card window, (t - w days, t): never older than the history serving keeps for a
    card, and without the payment itself and the card's other payments at the same instant. -#}
{%- set card_windows = var('card_windows_days') -%}
{%- set card_horizon = card_windows | max -%}
{%- set terminal_windows = var('terminal_windows_days') -%}
{%- set microseconds_per_day = 86400 * 1000000 -%}

with

transactions as (

    select
        *,
        hash(card_key) as card_partition,
        epoch_us(tx_datetime) as tx_epoch_us

    from {{ ref('stg_transactions') }}

),

terminal_days as (

    select * from {{ ref('int_terminal_days_aggregated') }}

),

card_windowed as (

    select
        transaction_id,
        tx_datetime,
        tx_date,
        card_key,
        terminal_id,
        amount,
        -- isodow: Monday = 1 .. Sunday = 7, so Saturday and Sunday are >= 6
        case when isodow(tx_datetime) >= 6 then 1 else 0 end as tx_during_weekend,
        case when hour(tx_datetime) <= 6 then 1 else 0 end as tx_during_night,
        {%- for w in card_windows %}
        count(*) over card_{{ w }}day as card_nb_tx_{{ w }}day,
        sum(amount) over card_{{ w }}day as card_sum_amount_{{ w }}day,
        {%- endfor %}
        count(*) over card_earlier as card_earlier_nb_tx,
        sum(amount) over card_earlier as card_earlier_sum_amount,
        tx_epoch_us - max(tx_epoch_us) over card_earlier as card_us_since_last_tx

    from transactions
    window
        {%- for w in card_windows %}
        card_{{ w }}day as (
            partition by card_partition order by tx_epoch_us
            range between {{ w * microseconds_per_day - 1 }} preceding and current row
        ),
        {%- endfor %}
        card_earlier as (
            partition by card_partition order by tx_epoch_us
            range between {{ card_horizon * microseconds_per_day - 1 }} preceding and 1 preceding
        )

),

final as (

    select
        card_windowed.transaction_id,
        card_windowed.tx_datetime,
        card_windowed.tx_date,
        card_windowed.card_key,
        card_windowed.terminal_id,
        card_windowed.amount,
        card_windowed.tx_during_weekend,
        card_windowed.tx_during_night,
        {%- for w in card_windows %}
        card_windowed.card_nb_tx_{{ w }}day,
        card_windowed.card_sum_amount_{{ w }}day / card_windowed.card_nb_tx_{{ w }}day
            as card_avg_amount_{{ w }}day,
        {%- endfor %}
        {%- for w in terminal_windows %}
        terminal_days.terminal_nb_tx_{{ w }}day,
        terminal_days.terminal_risk_{{ w }}day,
        {%- endfor %}
        -- 1.0 (as usual) when there is nothing to compare with
        case
            when card_windowed.card_earlier_sum_amount > 0
                then card_windowed.amount * card_windowed.card_earlier_nb_tx
                    / card_windowed.card_earlier_sum_amount
            else 1.0
        end as card_amount_ratio_{{ card_horizon }}day,
        -- no earlier payment within the horizon: the horizon itself, "at least that long"
        coalesce(
            card_windowed.card_us_since_last_tx / 1000000,
            {{ card_horizon * 86400 }}
        )::double as card_seconds_since_last_tx,
        {%- for w in terminal_windows %}
        terminal_days.terminal_recent_nb_fraud_{{ w }}day,
        terminal_days.terminal_recent_risk_{{ w }}day{{ "," if not loop.last }}
        {%- endfor %}

    from card_windowed
    left join terminal_days
        on card_windowed.terminal_id = terminal_days.terminal_id
        and card_windowed.tx_date = terminal_days.tx_date

)

select * from final
