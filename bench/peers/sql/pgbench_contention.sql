-- contention: clients race for the 100 units of position 1/1, 1 unit each
-- (the seed statement; pgbench.ts runs -t, enough attempts to use them all).
\set p 1
\set w 1
\set q 1
UPDATE stockd_bench.inventory SET available = available - :q, reserved = reserved + :q
WHERE product_id = :p AND warehouse_id = :w AND available >= :q;
