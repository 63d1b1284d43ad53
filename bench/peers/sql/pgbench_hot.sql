-- hot: every client reserves 1 unit of one position (the seed statement;
-- position 1/1 is hotProductId/hotWarehouseId in bench/peers/common.ts).
\set p 1
\set w 1
\set q 1
UPDATE stockd_bench.inventory SET available = available - :q, reserved = reserved + :q
WHERE product_id = :p AND warehouse_id = :w AND available >= :q;
