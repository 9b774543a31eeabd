{#- Fails when the model and `compare_model` do not have the same number of rows. -#}
{% test equal_row_count(model, compare_model) %}

select model_rows, compare_rows
from
    (select count(*) as model_rows from {{ model }}) as m,
    (select count(*) as compare_rows from {{ compare_model }}) as c
where model_rows != compare_rows

{% endtest %}
