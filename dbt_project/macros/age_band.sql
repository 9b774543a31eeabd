{#- The age band of a person born on `birth_date`, on `at_date` (complete years).
    Bands are wide enough that no birth date can be recovered from them. -#}
{% macro age_band(birth_date, at_date) -%}
    case
        when {{ birth_date }} is null or {{ at_date }} is null then null
        when datesub('year', {{ birth_date }}, {{ at_date }}) < 18 then 'under 18'
        when datesub('year', {{ birth_date }}, {{ at_date }}) < 25 then '18-24'
        when datesub('year', {{ birth_date }}, {{ at_date }}) < 35 then '25-34'
        when datesub('year', {{ birth_date }}, {{ at_date }}) < 45 then '35-44'
        when datesub('year', {{ birth_date }}, {{ at_date }}) < 55 then '45-54'
        when datesub('year', {{ birth_date }}, {{ at_date }}) < 65 then '55-64'
        else '65+'
    end
{%- endmacro %}
