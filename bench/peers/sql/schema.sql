-- The seed article's schema, recreated before every run in a schema of its
-- own (nothing else in the database is touched). `sold` is what payments
-- move reserved stock to; available + reserved + sold stays what was
-- received.
CREATE SCHEMA IF NOT EXISTS stockd_bench;
DROP TABLE IF EXISTS stockd_bench.holds, stockd_bench.orders, stockd_bench.inventory;

CREATE TABLE stockd_bench.inventory (
  product_id   integer NOT NULL,
  warehouse_id integer NOT NULL,
  available    bigint  NOT NULL,
  reserved     bigint  NOT NULL DEFAULT 0,
  sold         bigint  NOT NULL DEFAULT 0,
  PRIMARY KEY (product_id, warehouse_id)
);

CREATE TABLE stockd_bench.orders (
  id            bigserial   PRIMARY KEY,
  -- PENDING_PAYMENT, then PAID or EXPIRED
  status        text        NOT NULL,
  reserved_till timestamptz NOT NULL
);

CREATE TABLE stockd_bench.holds (
  id           bigserial   PRIMARY KEY,
  order_id     bigint      NOT NULL REFERENCES stockd_bench.orders (id),
  product_id   integer     NOT NULL,
  warehouse_id integer     NOT NULL,
  quantity     bigint      NOT NULL,
  expires_at   timestamptz NOT NULL,
  -- HELD, then SOLD or RELEASED
  status       text        NOT NULL
);

CREATE INDEX holds_order_id ON stockd_bench.holds (order_id);
-- What the sweeper looks for: pending orders by expiry.
CREATE INDEX orders_pending_reserved_till ON stockd_bench.orders (reserved_till)
  WHERE status = 'PENDING_PAYMENT';
