{#- Terminal history for every day a terminal took payments, as of the start of that day, as
    declared in orchestration/usecases/fraud.yaml (`features.declared.windowed.terminal`) and
    rendered by dbt_project/macros/declared_features.sql: windows of w whole days, the
    handbook's (terminal_*) skipping the last 7 days before D (days D-7-w .. D-8), the recent
    ones (terminal_recent_*) the w days just before D. A fraud counts only if its report date
    is before D: the information rule shared by all features (a report is usable for a
    transaction iff report_date < tx_date). -#}
{{ declared_day_aggregates(
    'fraud', 'terminal',
    events=ref('stg_transactions'),
    labels=ref('stg_fraud_reports'),
) }}
