{#- The handbook's baseline features (Le Borgne et al., Fraud Detection Handbook, ch. 3) and the
    production ones, one row per transaction, using only what was known when the payment was
    made. Declared once in orchestration/usecases/fraud.yaml (`features.declared`), rendered
    here by dbt_project/macros/declared_features.sql; the scoring service computes the same
    declaration. Card windows are time-based, (t - w days, t]; the terminal's come from
    int_terminal_days_aggregated (whole days before the payment's day). -#}
{{ declared_feature_mart(
    'fraud',
    events=ref('stg_transactions'),
    day_groups={'terminal': ref('int_terminal_days_aggregated')},
) }}
