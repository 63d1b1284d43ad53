import type { Line } from "../engine/index.ts";
import { distanceKm } from "./geo.ts";

// Choosing warehouses for lines that name none. The policy (README, "Which
// warehouse"): the nearest warehouse with enough stock to the shipping
// location when the request gives one, else the one with the most available
// (ties: the older warehouse); a line is split across warehouses only when
// no single one has enough, taking from them in the same order of preference.

export interface Candidate {
  warehouseId: string;
  available: number;
  latitude: number;
  longitude: number;
}

export interface Wanted {
  productId: string;
  /** Empty: stockd chooses. */
  warehouseId: string;
  quantity: number;
}

export type Allocation =
  | { ok: true; lines: Line[]; origin: number[] }
  | { ok: false; lineIndex: number; available: number };

export interface Place {
  latitude: number;
  longitude: number;
}

/**
 * Turns the wanted lines into lines with a warehouse each; `origin[i]` is
 * the wanted line that line i came from. `stock(productId)` gives the
 * candidates of a product in creation order. Several lines of one product
 * draw on the same stock, so what one takes is not offered to the next.
 */
export function allocate(
  wanted: Wanted[],
  stock: (productId: string) => Candidate[],
  shipTo: Place | undefined,
): Allocation {
  const lines: Line[] = [];
  const origin: number[] = [];
  const taken = new Map<string, number>();
  const key = (p: string, w: string) => `${p}\u0000${w}`;
  for (let i = 0; i < wanted.length; i++) {
    const line = wanted[i]!;
    if (line.warehouseId !== "") {
      lines.push({
        productId: line.productId,
        warehouseId: line.warehouseId,
        quantity: line.quantity,
      });
      origin.push(i);
      continue;
    }
    const candidates = stock(line.productId).map((c) => ({
      ...c,
      available: c.available - (taken.get(key(line.productId, c.warehouseId)) ?? 0),
    }));
    const ranked = rank(candidates, shipTo);
    const whole = ranked.find((c) => c.available >= line.quantity);
    const parts: { warehouseId: string; quantity: number }[] = [];
    if (whole !== undefined) {
      parts.push({ warehouseId: whole.warehouseId, quantity: line.quantity });
    } else {
      let left = line.quantity;
      for (const c of ranked) {
        if (left === 0) break;
        if (c.available <= 0) continue;
        const q = Math.min(left, c.available);
        parts.push({ warehouseId: c.warehouseId, quantity: q });
        left -= q;
      }
      if (left > 0) {
        const available = ranked.reduce((s, c) => s + Math.max(0, c.available), 0);
        return { ok: false, lineIndex: i, available };
      }
    }
    for (const part of parts) {
      const k = key(line.productId, part.warehouseId);
      taken.set(k, (taken.get(k) ?? 0) + part.quantity);
      lines.push({ productId: line.productId, ...part });
      origin.push(i);
    }
  }
  return { ok: true, lines, origin };
}

/** Candidates in order of preference: nearest first when there is a place
 * to ship to, else most available first; ties keep creation order. */
function rank(candidates: Candidate[], shipTo: Place | undefined): Candidate[] {
  const order = candidates.map((c, i) => ({ c, i }));
  if (shipTo !== undefined) {
    const d = new Map(candidates.map((c) => [c, distanceKm(shipTo, c)]));
    order.sort((a, b) => d.get(a.c)! - d.get(b.c)! || a.i - b.i);
  } else {
    order.sort((a, b) => b.c.available - a.c.available || a.i - b.i);
  }
  return order.map((o) => o.c);
}
