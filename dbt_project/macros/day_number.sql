{#- A day as a whole number (consecutive days differ by 1), for windows of whole days: its Julian
    day number. Not `date_diff` from an epoch written as a date literal: the compiled SQL is kept
    outside the raw zone (dbt's calls, the manifest, the serving definitions), where the PII scan
    reads every date of birth verbatim, and a world with a customer born on that epoch would
    fail the personal-data gate. -#}
{% macro day_number(day) -%}
    julian(cast({{ day }} as date))::bigint
{%- endmacro %}
