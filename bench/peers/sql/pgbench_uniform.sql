-- uniform: 1 unit of a random one of the 100 x 100 positions (the seed
-- statement; uniformProductCount x uniformWarehouseCount in bench/lib/scenario.ts).
\set p random(1, 100)
\set w random(1, 100)
\set q 1
UPDATE stockd_bench.inventory SET available = available - :q, reserved = reserved + :q
WHERE product_id = :p AND warehouse_id = :w AND available >= :q;
