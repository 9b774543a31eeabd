{#- Fails for every row where the column is outside [min_value, max_value] (bounds optional,
    inclusive). Nulls pass: pair with not_null where they must not occur. -#}
{% test value_between(model, column_name, min_value=none, max_value=none) %}

select {{ column_name }} as out_of_range_value
from {{ model }}
where
    {%- if min_value is not none %} {{ column_name }} < {{ min_value }}{% endif %}
    {%- if min_value is not none and max_value is not none %} or{% endif %}
    {%- if max_value is not none %} {{ column_name }} > {{ max_value }}{% endif %}
    {%- if min_value is none and max_value is none %} false{% endif %}

{% endtest %}
