-- transaction_features partitions its card windows by hash(card_key): two cards sharing a
-- 64-bit hash would see each other's payments. Fails (one row) if that ever happens.
select
    count(distinct card_key) as nb_cards,
    count(distinct hash(card_key)) as nb_card_hashes
from {{ ref('stg_transactions') }}
having count(distinct card_key) != count(distinct hash(card_key))
