// The no-oversell check after a PostgreSQL run (both peers): what the
// tables hold against what was received and what the clients were told.

import type pg from "pg";
import { contentionUnits, type ScenarioName } from "../lib/scenario.ts";
import { grouped } from "../lib/stats.ts";
import { hotProductId, hotWarehouseId, initialStock, positionAt } from "./common.ts";

/** What the clients were told over the whole run (warm-up and drain
 * included); undefined where only the database knows (pgbench). */
export interface ToldCounts {
  reserved?: number;
  checkouts?: number;
  payments?: number;
  /** Contention: the successes of the race. */
  raceOk?: number;
}

export interface Verdict {
  consistent: boolean;
  notes: string[];
}

interface InventoryRow {
  positions: number;
  negative: number;
  unbalanced: number;
  reserved: string;
  sold: string;
  hot_available: string;
}

/** Every position: available, reserved and sold never negative and adding
 * up to what it received; then what the scenario adds (the successes told
 * match the rows; for checkout, holds and orders match inventory). */
export async function checkPostgres(
  c: pg.Client,
  scenario: ScenarioName,
  told: ToldCounts,
): Promise<Verdict> {
  const r = await c.query<InventoryRow>(
    `SELECT count(*)::int AS positions,
            count(*) FILTER (WHERE available < 0 OR reserved < 0 OR sold < 0)::int AS negative,
            count(*) FILTER (WHERE available + reserved + sold <>
              CASE WHEN product_id = $1 AND warehouse_id = $2 THEN $3::bigint ELSE $4::bigint END
            )::int AS unbalanced,
            sum(reserved)::text AS reserved, sum(sold)::text AS sold,
            max(available) FILTER (WHERE product_id = $1 AND warehouse_id = $2)::text
              AS hot_available
     FROM stockd_bench.inventory`,
    [
      hotProductId,
      hotWarehouseId,
      initialStock(scenario, positionAt(0)),
      initialStock(scenario, positionAt(1)),
    ],
  );
  const row = r.rows[0]!;
  const reserved = Number(row.reserved);
  const failures: string[] = [];
  if (row.negative > 0) failures.push(`${row.negative} positions with a negative count`);
  if (row.unbalanced > 0) {
    failures.push(`${row.unbalanced} positions where available + reserved + sold <> received`);
  }
  const facts = [`${grouped(row.positions)} positions`, `reserved ${grouped(reserved)}`];
  if (told.reserved !== undefined && told.reserved !== reserved) {
    failures.push(`clients were told ${told.reserved} successes, the rows hold ${reserved}`);
  }
  if (told.raceOk !== undefined && told.raceOk !== contentionUnits) {
    failures.push(`${told.raceOk} successes in the race for ${contentionUnits} units`);
  }
  if (scenario === "contention" && Number(row.hot_available) !== 0) {
    failures.push(`${row.hot_available} units left after the race`);
  }
  if (scenario === "checkout") {
    const orders = await checkOrders(c, told, failures);
    facts.push(`sold ${grouped(Number(row.sold))}`, orders);
  }
  const verdict = failures.length === 0 ? "held" : `FAILED: ${failures.join("; ")}`;
  return {
    consistent: failures.length === 0,
    notes: [`no-oversell check ${verdict} (${facts.join(", ")})`],
  };
}

/** Holds add up to each position's reserved and sold; every hold's status
 * follows its order's; orders and payments match what clients were told. */
async function checkOrders(c: pg.Client, told: ToldCounts, failures: string[]): Promise<string> {
  const mismatch = await c.query<{ n: number }>(
    `SELECT count(*)::int AS n
     FROM stockd_bench.inventory AS i
     LEFT JOIN (SELECT product_id, warehouse_id,
                       coalesce(sum(quantity) FILTER (WHERE status = 'HELD'), 0) AS held,
                       coalesce(sum(quantity) FILTER (WHERE status = 'SOLD'), 0) AS sold
                FROM stockd_bench.holds GROUP BY product_id, warehouse_id) AS h
       USING (product_id, warehouse_id)
     WHERE i.reserved <> coalesce(h.held, 0) OR i.sold <> coalesce(h.sold, 0)`,
  );
  const n = mismatch.rows[0]?.n ?? 0;
  if (n > 0) failures.push(`${n} positions whose reserved or sold differ from their holds`);
  const strays = await c.query<{ n: number }>(
    `SELECT count(*)::int AS n
     FROM stockd_bench.holds AS h JOIN stockd_bench.orders AS o ON o.id = h.order_id
     WHERE (o.status, h.status) NOT IN
       (('PENDING_PAYMENT', 'HELD'), ('PAID', 'SOLD'), ('EXPIRED', 'RELEASED'))`,
  );
  const s = strays.rows[0]?.n ?? 0;
  if (s > 0) failures.push(`${s} holds whose status does not follow their order's`);
  const byStatus = await c.query<{ status: string; n: number }>(
    "SELECT status, count(*)::int AS n FROM stockd_bench.orders GROUP BY status",
  );
  const count = (status: string) => byStatus.rows.find((x) => x.status === status)?.n ?? 0;
  const orders = byStatus.rows.reduce((sum, x) => sum + x.n, 0);
  if (told.checkouts !== undefined && told.checkouts !== orders) {
    failures.push(`clients were told ${told.checkouts} checkouts, there are ${orders} orders`);
  }
  if (told.payments !== undefined && told.payments !== count("PAID")) {
    failures.push(`clients were told ${told.payments} payments, ${count("PAID")} orders are paid`);
  }
  return (
    `orders ${grouped(orders)}: ${grouped(count("PAID"))} paid, ` +
    `${grouped(count("EXPIRED"))} expired, ${grouped(count("PENDING_PAYMENT"))} pending`
  );
}
