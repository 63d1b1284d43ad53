-- checkout, as pgbench 15 can say it (-D hold_ms=...): 3 distinct random
-- positions reserved all or nothing with the seed statement, then the order
-- and its holds, in one transaction. Orders with an even id are paid at
-- once in a second transaction; the others are left for the sweeper, which
-- the Node driver runs beside pgbench (bench/peers/pgbench.ts).
--
-- The 3 positions are sorted by key, so every checkout locks its rows in
-- the same order and two checkouts never wait on each other in a cycle (no
-- deadlocks). pgbench has no loops: Floyd's sampling of 3 of the 100 x 100
-- positions, written out, then sorted with least/greatest.
\set n 10000
\set t1 random(0, :n - 3)
\set s1 :t1
\set t2 random(0, :n - 2)
\set s2 case when :t2 = :s1 then :n - 2 else :t2 end
\set t3 random(0, :n - 1)
\set s3 case when :t3 = :s1 or :t3 = :s2 then :n - 1 else :t3 end
\set lo least(:s1, :s2, :s3)
\set hi greatest(:s1, :s2, :s3)
\set mid :s1 + :s2 + :s3 - :lo - :hi
\set p1 :lo / 100 + 1
\set w1 :lo % 100 + 1
\set p2 :mid / 100 + 1
\set w2 :mid % 100 + 1
\set p3 :hi / 100 + 1
\set w3 :hi % 100 + 1
\set q 1
-- A line reserved is the seed statement's 1 row; count(*) makes 0 rows
-- a value pgbench can test (\gset wants exactly one row).
BEGIN;
WITH r AS (
  UPDATE stockd_bench.inventory SET available = available - :q, reserved = reserved + :q
  WHERE product_id = :p1 AND warehouse_id = :w1 AND available >= :q RETURNING 1
) SELECT count(*) AS ok1 FROM r \gset
\if :ok1
WITH r AS (
  UPDATE stockd_bench.inventory SET available = available - :q, reserved = reserved + :q
  WHERE product_id = :p2 AND warehouse_id = :w2 AND available >= :q RETURNING 1
) SELECT count(*) AS ok2 FROM r \gset
\else
\set ok2 0
\endif
\if :ok2
WITH r AS (
  UPDATE stockd_bench.inventory SET available = available - :q, reserved = reserved + :q
  WHERE product_id = :p3 AND warehouse_id = :w3 AND available >= :q RETURNING 1
) SELECT count(*) AS ok3 FROM r \gset
\else
\set ok3 0
\endif
\if :ok3
WITH o AS (
  INSERT INTO stockd_bench.orders (status, reserved_till)
  VALUES ('PENDING_PAYMENT', now() + :hold_ms * interval '1 millisecond')
  RETURNING id, reserved_till
), h AS (
  INSERT INTO stockd_bench.holds (order_id, product_id, warehouse_id, quantity, expires_at, status)
  SELECT o.id, l.p, l.w, :q, o.reserved_till, 'HELD'
  FROM o, (VALUES (:p1::integer, :w1::integer), (:p2::integer, :w2::integer),
                  (:p3::integer, :w3::integer)) AS l (p, w)
) SELECT id AS order_id FROM o \gset
COMMIT;
\if :order_id % 2 = 0
-- The payment: the order (still pending, not expired), then reserved -> sold
-- on its lines in the same key order, then its holds.
BEGIN;
WITH r AS (
  UPDATE stockd_bench.orders SET status = 'PAID'
  WHERE id = :order_id AND status = 'PENDING_PAYMENT' AND reserved_till > now() RETURNING 1
) SELECT count(*) AS paid FROM r \gset
\if :paid
UPDATE stockd_bench.inventory SET reserved = reserved - :q, sold = sold + :q
WHERE product_id = :p1 AND warehouse_id = :w1 AND reserved >= :q;
UPDATE stockd_bench.inventory SET reserved = reserved - :q, sold = sold + :q
WHERE product_id = :p2 AND warehouse_id = :w2 AND reserved >= :q;
UPDATE stockd_bench.inventory SET reserved = reserved - :q, sold = sold + :q
WHERE product_id = :p3 AND warehouse_id = :w3 AND reserved >= :q;
UPDATE stockd_bench.holds SET status = 'SOLD' WHERE order_id = :order_id AND status = 'HELD';
COMMIT;
\else
ROLLBACK;
\endif
\endif
\else
ROLLBACK;
\endif
