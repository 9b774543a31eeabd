{#- Features declared once, in the use case's declaration (orchestration/usecases/<name>.yaml,
    `features.declared`), rendered into SQL here; the online path reads the same declaration.
    The pipeline hands the resolved declaration to dbt as the var `declared_features`
    (orchestration/lib/core/feature_declaration.py: every name expanded, every window a
    number). Without it (`dbt parse`, which renders no SQL it runs) the macros render nothing;
    a run without it is an error saying how to run dbt. -#}

{% macro declared_features(usecase) -%}
    {%- set declared = var('declared_features', {}).get(usecase) -%}
    {%- if declared is none and execute -%}
        {{ exceptions.raise_compiler_error(
            "no declared features for use case '" ~ usecase ~ "': dbt runs through the pipeline "
            ~ "(blueprint materialize), which passes them as --vars") }}
    {%- endif -%}
    {{ return(declared) }}
{%- endmacro %}


{#- One row per event of `events` (the staged source) with its declared features: the row's
    own, each event-clock group's windows (time-based, (t - w, t], like pandas rolling on the
    datetime: ordered by epoch microseconds, an event w earlier is out, one a microsecond later
    is in; an entity's events at the very same instant are peers and count for each other),
    each group's `earlier` features (the entity's events of the widest window before the
    event's instant), and each day-clock group's row for the event's entity and day, from
    `day_groups` (group name -> the relation of its `declared_day_aggregates` model).
    Windows are partitioned by a 64-bit hash of the entity key rather than the key itself:
    sorting integers is several times faster (a test per use case guarantees no two keys share
    a hash). -#}
{% macro declared_feature_mart(usecase, events, day_groups={}) -%}
{%- set spec = declared_features(usecase) -%}
{%- if spec is not none -%}
{%- set keys = [] -%}
{%- for group in spec.event_groups + spec.day_groups -%}
    {%- if group.key not in keys %}{% do keys.append(group.key) %}{% endif -%}
{%- endfor -%}

with

events as (

    select
        *,
        {%- for group in spec.event_groups %}
        hash({{ group.key }}) as {{ group.name }}__partition,
        {%- endfor %}
        epoch_us({{ spec.event_time }}) as event__epoch_us

    from {{ events }}

),

windowed as (

    select
        {%- for group in spec.event_groups %}
        {%- for w in group.windows %}
        count(*) over {{ group.name }}__{{ w.suffix }} as {{ group.name }}__count_{{ w.suffix }},
        {%- for of in group.features | selectattr('op', 'in', ['sum', 'mean']) | map(attribute='of') | unique %}
        sum({{ of }}) over {{ group.name }}__{{ w.suffix }} as {{ group.name }}__sum_{{ of }}_{{ w.suffix }},
        {%- endfor %}
        {%- endfor %}
        {%- if group.earlier %}
        count(*) over {{ group.name }}__earlier as {{ group.name }}__earlier_count,
        {%- for of in group.earlier | selectattr('op', 'equalto', 'ratio_to_mean') | map(attribute='of') | unique %}
        sum({{ of }}) over {{ group.name }}__earlier as {{ group.name }}__earlier_sum_{{ of }},
        {%- endfor %}
        event__epoch_us - max(event__epoch_us) over {{ group.name }}__earlier
            as {{ group.name }}__earlier_us_since_last,
        {%- endif %}
        {%- endfor %}
        {#- row features over the event's own columns, before any join can make a name ambiguous #}
        {%- for feature in spec.row if feature.sql != feature.name %}
        {{ feature.sql }} as {{ feature.name }},
        {%- endfor %}
        events.*

    from events
    {%- set frames = [] %}
    {%- for group in spec.event_groups %}
    {%- for w in group.windows %}
    {%- do frames.append(group.name ~ '__' ~ w.suffix ~ ' as (partition by ' ~ group.name
        ~ '__partition order by event__epoch_us range between ' ~ (w.microseconds - 1)
        ~ ' preceding and current row)') %}
    {%- endfor %}
    {%- if group.earlier %}
    {%- do frames.append(group.name ~ '__earlier as (partition by ' ~ group.name
        ~ '__partition order by event__epoch_us range between '
        ~ (group.horizon_microseconds - 1) ~ ' preceding and 1 preceding)') %}
    {%- endif %}
    {%- endfor %}
    {%- if frames %}
    window
        {{ frames | join(',\n        ') }}
    {%- endif %}

),

{%- set columns = [spec.row_id, spec.event_time, spec.partition_date] + keys -%}
{%- set selected = [] -%}
{%- for column in columns %}{% do selected.append('windowed.' ~ column) %}{% endfor -%}
{%- for feature in spec.row -%}
    {%- do selected.append('windowed.' ~ feature.name) -%}
{%- endfor -%}
{%- for group in spec.event_groups -%}
    {%- set g = 'windowed.' ~ group.name -%}
    {%- for feature in group.features -%}
        {%- set w = feature.window.suffix -%}
        {%- if feature.op == 'count' -%}
            {%- do selected.append(g ~ '__count_' ~ w ~ ' as ' ~ feature.name) -%}
        {%- elif feature.op == 'sum' -%}
            {%- do selected.append(g ~ '__sum_' ~ feature.of ~ '_' ~ w ~ ' as ' ~ feature.name) -%}
        {%- else -%}
            {%- do selected.append(g ~ '__sum_' ~ feature.of ~ '_' ~ w ~ ' / ' ~ g ~ '__count_' ~ w
                ~ ' as ' ~ feature.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for feature in group.earlier -%}
        {%- if feature.op == 'ratio_to_mean' -%}
            {#- the declared `otherwise` when there is nothing to compare with -#}
            {%- do selected.append('case when ' ~ g ~ '__earlier_sum_' ~ feature.of ~ ' > 0 then windowed.'
                ~ feature.of ~ ' * ' ~ g ~ '__earlier_count / ' ~ g ~ '__earlier_sum_' ~ feature.of
                ~ ' else ' ~ feature.otherwise ~ ' end as ' ~ feature.name) -%}
        {%- else -%}
            {#- no earlier event within the horizon: the horizon itself, "at least that long" -#}
            {%- do selected.append('coalesce(' ~ g ~ '__earlier_us_since_last / 1000000, '
                ~ (group.horizon_microseconds // 1000000) ~ ')::double as ' ~ feature.name) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endfor -%}
{%- for group in spec.day_groups -%}
    {%- for feature in group.features -%}
        {%- do selected.append(group.name ~ '__days.' ~ feature.name) -%}
    {%- endfor -%}
{%- endfor %}

final as (

    select
        {{ selected | join(',\n        ') }}

    from windowed
    {%- for group in spec.day_groups %}
    {%- if group.name not in day_groups %}
    {{ exceptions.raise_compiler_error("declared_feature_mart: day-clock group '" ~ group.name
        ~ "' needs its model: pass day_groups={'" ~ group.name ~ "': ref('<its model>')}") }}
    {%- endif %}
    left join {{ day_groups[group.name] }} as {{ group.name }}__days
        on windowed.{{ group.key }} = {{ group.name }}__days.{{ group.key }}
        and windowed.{{ spec.partition_date }} = {{ group.name }}__days.{{ spec.partition_date }}
    {%- endfor %}

)

select * from final
{%- endif -%}
{%- endmacro %}


{#- One row per entity and day on which the entity had events: what was known about it at the
    start of that day, for the day-clock group `group_name`. Each window of w whole days skips
    `delay` days first: days D - delay - w .. D - delay - 1. A label (a row of `labels`, the
    label's staged source, joined on the row id) counts only if it became known before day D:
    the information rule shared by all features. Computed from per-entity-day counts, so it
    costs one row per entity-day, not per pair of events. -#}
{% macro declared_day_aggregates(usecase, group_name, events, labels) -%}
{%- set spec = declared_features(usecase) -%}
{%- if spec is not none -%}
{%- set matching = spec.day_groups | selectattr('name', 'equalto', group_name) | list -%}
{%- if not matching -%}
    {{ exceptions.raise_compiler_error("declared_day_aggregates: '" ~ group_name ~ "' is no "
        ~ "day-clock group of " ~ usecase ~ "'s declared features") }}
{%- endif -%}
{%- set group = matching[0] -%}
{%- set key = group.key -%}
{%- set day = spec.partition_date -%}
{%- set labelled = group.features | selectattr('op', 'in', ['label_count', 'label_rate']) | list -%}
{%- set label_spans = [] -%}
{%- for feature in labelled -%}
    {%- set span = {'delay_days': feature.delay_days, 'days': feature.window.days} -%}
    {%- if span not in label_spans %}{% do label_spans.append(span) %}{% endif -%}
{%- endfor -%}
{%- set reach = [0] -%}
{%- for feature in labelled %}{% do reach.append(feature.delay_days + feature.window.days) %}{% endfor -%}

with

events as (

    select {{ spec.row_id }}, {{ key }}, {{ day }} from {{ events }}

),

entity_days as (

    select
        {{ key }},
        {{ day }},
        {{ day_number(day) }} as day_number,
        count(*) as nb_tx

    from events
    group by {{ key }}, {{ day }}

),

windowed_counts as (

    select
        {{ key }},
        {{ day }},
        day_number,
        nb_tx,
        {%- for span in group.spans %}
        coalesce(sum(nb_tx) over (
            partition by {{ key }} order by day_number
            range between {{ span.delay_days + span.days }} preceding
                and {{ span.delay_days + 1 }} preceding
        ), 0) as count__{{ span.delay_days }}_{{ span.days }}{{ "," if not loop.last }}
        {%- endfor %}

    from entity_days

){% if labelled %},

labels as (

    select {{ spec.row_id }}, {{ spec.label_known_at }} from {{ labels }}

),

-- labels per entity, event day and the day they became known: when a label becomes usable
-- depends on that day, so those days are kept apart
entity_labels as (

    select
        events.{{ key }},
        {{ day_number('events.' ~ day) }} as label_day_number,
        labels.{{ spec.label_known_at }},
        count(*) as nb_labels

    from labels
    inner join events
        on labels.{{ spec.row_id }} = events.{{ spec.row_id }}
    group by all

),

-- labels known before D among the entity's events of each window
windowed_labels as (

    select
        entity_days.{{ key }},
        entity_days.{{ day }},
        {%- for span in label_spans %}
        coalesce(sum(entity_labels.nb_labels) filter (
            where entity_labels.label_day_number
                between entity_days.day_number - {{ span.delay_days + span.days }}
                and entity_days.day_number - {{ span.delay_days + 1 }}
        ), 0) as labels__{{ span.delay_days }}_{{ span.days }}{{ "," if not loop.last }}
        {%- endfor %}

    from entity_days
    inner join entity_labels
        on entity_days.{{ key }} = entity_labels.{{ key }}
        and entity_labels.label_day_number
            between entity_days.day_number - {{ reach | max }}
            and entity_days.day_number - 1
        and entity_labels.{{ spec.label_known_at }} < entity_days.{{ day }}
    group by entity_days.{{ key }}, entity_days.{{ day }}

){% endif %},

final as (

    select
        windowed_counts.{{ key }},
        windowed_counts.{{ day }},
        windowed_counts.nb_tx,
        {%- for feature in group.features %}
        {%- set span = feature.delay_days ~ '_' ~ feature.window.days %}
        {%- if feature.op == 'count' %}
        windowed_counts.count__{{ span }} as {{ feature.name }}
        {%- elif feature.op == 'label_count' %}
        coalesce(windowed_labels.labels__{{ span }}, 0) as {{ feature.name }}
        {%- else %}
        case
            when windowed_counts.count__{{ span }} = 0 then 0.0
            else coalesce(windowed_labels.labels__{{ span }}, 0) / windowed_counts.count__{{ span }}
        end as {{ feature.name }}
        {%- endif %}{{ "," if not loop.last }}
        {%- endfor %}

    from windowed_counts
    {%- if labelled %}
    left join windowed_labels
        on windowed_counts.{{ key }} = windowed_labels.{{ key }}
        and windowed_counts.{{ day }} = windowed_labels.{{ day }}
    {%- endif %}

)

select * from final
{%- endif -%}
{%- endmacro %}
