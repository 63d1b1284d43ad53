// The checkout workload's client, the same for every peer: reserve 3
// distinct random positions (1 unit each, sorted by key) and create a
// pending order in one step; every second order a client makes is paid at
// once, the others are left to expire (the peer's sweeper releases them).
// What is measured: checkouts (ok/s, latency); payments are counted and
// reported in the notes.

import { checkoutLineCount } from "../lib/scenario.ts";
import { grouped, ratePerS } from "../lib/stats.ts";
import {
  checkoutHoldMs,
  checkoutPositions,
  errorNotes,
  latencyText,
  type Phase,
  type Position,
  Tally,
  timed,
  xorshift32,
} from "./common.ts";

export interface CheckoutOps<Id> {
  /** The order's id, or null when a line is out of stock (nothing held). */
  checkout(client: number, lines: Position[]): Promise<Id | null>;
  /** False when the order is no longer pending (expired). */
  pay(client: number, orderId: Id, lines: Position[]): Promise<boolean>;
}

export interface CheckoutStep {
  checkouts: Tally;
  payments: Tally;
  run(client: number, phase: Phase): Promise<void>;
  notes(elapsedMs: number): string[];
}

export function checkoutStep<Id>(clients: number, ops: CheckoutOps<Id>): CheckoutStep {
  const checkouts = new Tally();
  const payments = new Tally();
  const randoms = Array.from({ length: clients }, (_, c) => xorshift32(0xc0ffee + c * 7919));
  const made = new Array<number>(clients).fill(0);
  return {
    checkouts,
    payments,
    run: async (c, phase) => {
      const lines = checkoutPositions(randoms[c]!);
      const order: { id: Id | null } = { id: null };
      await timed(checkouts, phase, async () => {
        order.id = await ops.checkout(c, lines);
        return order.id === null ? "refused" : "ok";
      });
      const id = order.id;
      if (id === null || made[c]!++ % 2 !== 0) return;
      await timed(payments, phase, async () => ((await ops.pay(c, id, lines)) ? "ok" : "refused"));
    },
    notes: (elapsedMs) => [
      `measured: checkouts (ok/s, latency): each reserves ${checkoutLineCount} distinct random ` +
        "positions, 1 unit each, sorted by key, all or nothing, and creates a pending order " +
        `with its holds (expiring after ${checkoutHoldMs} ms); every second order of a client ` +
        "is paid right after its checkout, the others are left to the sweeper",
      `payments: ${grouped(payments.ok)} in the window, ${grouped(ratePerS(payments.ok, elapsedMs))}/s, ` +
        `${grouped(payments.refused)} refused, ${grouped(payments.errors)} errors; ` +
        latencyText(payments.latency),
      ...errorNotes("checkout", checkouts),
      ...errorNotes("payment", payments),
    ],
  };
}
