import type { Product, Warehouse } from "./catalog.ts";
import { formatLatitude, formatLongitude } from "./geo.ts";
import { toMajorUnits } from "./money.ts";
import type { CartView, Order } from "./orders.ts";
import type { Level, ReservationOut } from "./stock.ts";

// The HTTP API's JSON shapes (the seed's): money in major units with its
// currency, times as ISO 8601, ids as strings.

const iso = (ms: number) => new Date(ms).toISOString();

export function warehouseJson(w: Warehouse) {
  return {
    id: w.id,
    name: w.name,
    address: w.address,
    lat: formatLatitude(w.latitude),
    long: formatLongitude(w.longitude),
    latitude: w.latitude,
    longitude: w.longitude,
    createdAt: iso(w.createTimeMs),
  };
}

export function productJson(p: Product) {
  return {
    id: p.id,
    name: p.name,
    description: p.description,
    price: toMajorUnits(p.priceMinor, p.currency),
    currency: p.currency,
    category: p.category,
    createdAt: iso(p.createTimeMs),
  };
}

export function levelJson(l: Level) {
  return {
    productId: l.productId,
    warehouseId: l.warehouseId,
    available: l.available,
    reserved: l.reserved,
  };
}

export function inventoryJson(productId: string, levels: Level[]) {
  return {
    productId,
    available: levels.reduce((s, l) => s + l.available, 0),
    reserved: levels.reduce((s, l) => s + l.reserved, 0),
    warehouses: levels.map((l) => ({
      warehouseId: l.warehouseId,
      available: l.available,
      reserved: l.reserved,
    })),
  };
}

export function reservationJson(r: ReservationOut) {
  return r.status === "OPEN"
    ? {
        id: String(r.holdId),
        status: r.status,
        lines: r.lines.map((l) => ({
          productId: l.productId,
          warehouseId: l.warehouseId,
          quantity: l.quantity,
        })),
        expiresAt: iso(r.expireTimeMs),
      }
    : { id: String(r.holdId), status: r.status, closedAt: iso(r.closeTimeMs ?? 0) };
}

export function cartJson(c: CartView) {
  const money = (minor: number) => (c.currency === "" ? 0 : toMajorUnits(minor, c.currency));
  return {
    id: c.id,
    userId: c.userId,
    items: c.items.map((i) => ({
      productId: i.productId,
      name: i.name,
      quantity: i.quantity,
      pricePerUnit: money(i.priceMinor),
      lineItemTotal: money(i.totalMinor),
    })),
    subtotal: money(c.subtotalMinor),
    tax: money(c.taxMinor),
    total: money(c.totalMinor),
    currency: c.currency === "" ? null : c.currency,
    ...(c.pendingOrderId === "" ? {} : { pendingOrderId: c.pendingOrderId }),
  };
}

export function orderJson(o: Order) {
  const money = (minor: number) => toMajorUnits(minor, o.currency);
  return {
    id: o.id,
    userId: o.userId,
    cartId: o.cartId,
    status: o.status,
    lines: o.lines.map((l) => ({
      productId: l.productId,
      name: l.name,
      warehouseId: l.warehouseId,
      quantity: l.quantity,
      pricePerUnit: money(l.priceMinor),
      lineItemTotal: money(l.totalMinor),
    })),
    subtotal: money(o.subtotalMinor),
    tax: money(o.taxMinor),
    total: money(o.totalMinor),
    currency: o.currency,
    reservationId: String(o.holdId),
    reservedTill: iso(o.reservedTillMs),
    ...(o.paymentId === "" ? {} : { paymentId: o.paymentId }),
    failedPaymentCount: o.failedPaymentCount,
    createdAt: iso(o.createTimeMs),
    updatedAt: iso(o.updateTimeMs),
  };
}
