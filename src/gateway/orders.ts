import { createHash, randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Line } from "../engine/index.ts";
import type { Engine } from "../host/index.ts";
import { RecordKind, type RecordStore, type RecordWrite } from "../persistence/index.ts";
import type { Place } from "./allocate.ts";
import type { Catalog } from "./catalog.ts";
import { Deadlines } from "./deadlines.ts";
import { ApiError, type Details, invalid, notFound } from "./errors.ts";
import { gatewayLimits } from "./limits.ts";
import { KeyedLock } from "./lock.ts";
import { lineTotalMinor, taxMinor } from "./money.ts";
import { engineError, placeIn, quantityIn, requestIdIn, type Stock } from "./stock.ts";

// Carts and orders (DESIGN.md, "The order lifecycle" and "One outcome per
// order"). The engine's hold is the truth about the stock; the order record
// follows it. Every step that must survive a crash is written before the
// step that depends on it:
//   checkout: order RESERVING (+ cart link, + idempotency key) -> reserve
//             (engine request id `co:<orderId>`, so a retry gets the same
//             hold) -> order PENDING_PAYMENT;
//   payment:  order `paying` (the payment id) -> fulfil -> order PAID.
// At start-up an order left RESERVING is reserved again (the engine answers
// with the hold it made, or makes it), and a PENDING order whose hold ended
// takes the hold's outcome. One lock per cart and per order serialises the
// steps on it. Settling a hold that spans partitions is the coordinator's
// job (pin, decide, apply), so an order is never half paid, half expired.

export type OrderStatus = "RESERVING" | "PENDING_PAYMENT" | "PAID" | "EXPIRED" | "CANCELLED";

export interface OrderLine {
  productId: string;
  warehouseId: string;
  name: string;
  quantity: number;
  priceMinor: number;
  totalMinor: number;
}

export interface Order {
  id: string;
  userId: string;
  cartId: string;
  status: OrderStatus;
  lines: OrderLine[];
  currency: string;
  subtotalMinor: number;
  taxMinor: number;
  totalMinor: number;
  holdId: number;
  holdDurationMs: number;
  reservedTillMs: number;
  paymentId: string;
  /** The checkout's Idempotency-Key, if it had one. */
  checkoutKey: string;
  /** A success callback being applied (written before the fulfil). */
  payingPaymentId: string;
  failedPaymentCount: number;
  createTimeMs: number;
  updateTimeMs: number;
}

interface CartRecord {
  id: string;
  userId: string;
  items: { productId: string; quantity: number }[];
  pendingOrderId: string;
  updateTimeMs: number;
}

export interface CartItemView {
  productId: string;
  name: string;
  quantity: number;
  priceMinor: number;
  totalMinor: number;
}

export interface CartView {
  id: string;
  userId: string;
  items: CartItemView[];
  currency: string;
  subtotalMinor: number;
  taxMinor: number;
  totalMinor: number;
  pendingOrderId: string;
}

/** A checkout's idempotency key (key `c:<userId>:<key>`). */
interface CheckoutKey {
  cartId: string;
  orderId: string;
  /** A checkout refused for good (out of stock): the same key gets it again. */
  refusal?: { code: string; message: string; details: Details };
  timeMs: number;
}

export interface OrdersConfig {
  holdDurationMs: number;
  taxRateBps: number;
  now: () => number;
  logger: Logger;
}

export class Orders {
  private readonly locks = new KeyedLock();
  private readonly deadlines: Deadlines;
  private closed = false;

  constructor(
    private readonly records: RecordStore,
    private readonly catalog: Catalog,
    private readonly stock: Stock,
    private readonly engine: Engine,
    private readonly config: OrdersConfig,
  ) {
    this.deadlines = new Deadlines(config.now, (orderId) => {
      void this.expire(orderId).catch((err: unknown) =>
        config.logger.error({ err, orderId }, "order expiry failed"),
      );
    });
  }

  /** Completes what a crash interrupted and arms the deadlines of pending
   * orders. Runs before the server is ready. */
  async recover(): Promise<{ resumed: number; pending: number; settled: number }> {
    let resumed = 0;
    let pending = 0;
    let settled = 0;
    const orders = [...this.records.all<Order>(RecordKind.Order)].map((r) => r.value);
    for (const o of orders) {
      if (o.status === "RESERVING") {
        resumed++;
        await this.locks.run(`cart:${o.userId}`, () => this.reserveOrder(o).catch(() => undefined));
      }
    }
    for (const { value } of this.records.all<Order>(RecordKind.Order)) {
      if (value.status !== "PENDING_PAYMENT") continue;
      const before = value.status;
      const after = await this.locks.run(`order:${value.id}`, () => this.follow(value));
      if (after.status !== before) settled++;
      else pending++;
    }
    return { resumed, pending, settled };
  }

  close(): void {
    this.closed = true;
    this.deadlines.close();
  }

  // ---- carts ------------------------------------------------------------------

  cart(userId: string): CartView {
    return this.view(this.cartRecord(userId));
  }

  async setCartItem(userId: string, productId: string, quantity: number): Promise<CartView> {
    const product = this.catalog.mustProduct(productId);
    quantityIn("quantity", quantity, 0);
    return this.locks.run(`cart:${userId}`, async () => {
      const cart = this.cartRecord(userId);
      const pending = this.pendingOrder(cart);
      if (pending !== undefined) {
        throw new ApiError(
          "CART_LOCKED",
          `the cart has order ${pending.id} awaiting payment until ${new Date(pending.reservedTillMs).toISOString()}; pay or cancel it first`,
          { orderId: pending.id },
        );
      }
      const items = cart.items.filter((i) => i.productId !== productId);
      if (quantity > 0) {
        const other = items.map((i) => this.catalog.product(i.productId)).find((p) => p);
        if (other !== undefined && other.currency !== product.currency) {
          throw new ApiError(
            "CURRENCY_MISMATCH",
            `product ${productId} is priced in ${product.currency}; the cart is in ${other.currency}`,
            { currency: product.currency, cartCurrency: other.currency },
          );
        }
        const at = cart.items.findIndex((i) => i.productId === productId);
        if (at < 0 && items.length >= gatewayLimits.cartLineCountMax) {
          throw invalid(`a cart holds at most ${gatewayLimits.cartLineCountMax} products`);
        }
        const line = { productId, quantity };
        if (at < 0) items.push(line);
        else items.splice(at, 0, line);
        const total = lineTotalMinor(quantity, product.priceMinor);
        if (typeof total !== "number") throw invalid(total.message, { field: "quantity" });
      }
      const next: CartRecord = {
        ...cart,
        items,
        pendingOrderId: "",
        updateTimeMs: this.config.now(),
      };
      if (!Number.isSafeInteger(this.view(next).totalMinor)) {
        throw invalid("the cart's total with tax would be too large to count exactly", {
          field: "quantity",
        });
      }
      await this.records.write([{ kind: RecordKind.Cart, key: userId, value: next }]);
      return this.view(next);
    });
  }

  // ---- checkout -----------------------------------------------------------------

  /** Reserves every line of the cart and creates the order; `created` is
   * false when an earlier checkout's order is returned. */
  async checkout(
    userId: string,
    cartId: string,
    key: string,
    shipTo: Place | undefined,
  ): Promise<{ order: Order; created: boolean }> {
    requestIdIn(key);
    if (shipTo !== undefined) placeIn(shipTo);
    return this.locks.run(`cart:${userId}`, async () => {
      const cart = this.cartRecord(userId);
      if (cart.id !== cartId) throw notFound("cart", cartId);
      const keyId = `c:${userId}:${key}`;
      if (key !== "") {
        const known = this.records.get<CheckoutKey>(RecordKind.Key, keyId);
        if (known !== undefined) return this.answerKey(known, cartId);
      }
      const pending = this.pendingOrder(cart);
      if (pending !== undefined) {
        if (key !== "") await this.rememberKey(keyId, cartId, pending.id, undefined);
        return { order: pending, created: false };
      }
      if (cart.items.length === 0) {
        throw new ApiError("CART_EMPTY", "the cart is empty: add items before checking out");
      }
      const order = await this.newOrder(cart, shipTo, key);
      const writes: RecordWrite[] = [
        { kind: RecordKind.Order, key: order.id, value: order },
        { kind: RecordKind.Cart, key: userId, value: { ...cart, pendingOrderId: order.id } },
      ];
      if (key !== "") {
        const k: CheckoutKey = { cartId, orderId: order.id, timeMs: order.createTimeMs };
        writes.push({ kind: RecordKind.Key, key: keyId, value: k });
      }
      await this.records.write(writes);
      const done = await this.reserveOrder(order);
      if (done.status !== "PENDING_PAYMENT") {
        throw new Error(`order ${order.id} is ${done.status} after its reservation`);
      }
      return { order: done, created: true };
    });
  }

  private async answerKey(known: CheckoutKey, cartId: string) {
    if (known.cartId !== cartId) {
      throw new ApiError(
        "REQUEST_ID_REUSED",
        `Idempotency-Key was used for cart ${known.cartId}, not ${cartId}`,
      );
    }
    if (known.refusal !== undefined) {
      const r = known.refusal;
      throw new ApiError(r.code as ApiError["code"], r.message, r.details);
    }
    const order = this.records.get<Order>(RecordKind.Order, known.orderId);
    if (order === undefined) throw new Error(`checkout key names a missing order ${known.orderId}`);
    return { order, created: false };
  }

  private async rememberKey(
    keyId: string,
    cartId: string,
    orderId: string,
    refusal: CheckoutKey["refusal"],
  ): Promise<void> {
    const k: CheckoutKey = { cartId, orderId, timeMs: this.config.now() };
    if (refusal !== undefined) k.refusal = refusal;
    await this.records.write([{ kind: RecordKind.Key, key: keyId, value: k }]);
  }

  /** Prices the cart and chooses warehouses; nothing is held yet. */
  private async newOrder(cart: CartRecord, shipTo: Place | undefined, key: string): Promise<Order> {
    const products = cart.items.map((i) => this.catalog.mustProduct(i.productId));
    const wanted = cart.items.map((i) => ({ ...i, warehouseId: "" }));
    const a = await this.stock.allocate(wanted, shipTo);
    if (!a.ok) {
      const item = cart.items[a.lineIndex]!;
      throw new ApiError(
        "OUT_OF_STOCK",
        `${item.quantity} of ${products[a.lineIndex]!.name} wanted, ${a.available} available`,
        { lineIndex: a.lineIndex, productId: item.productId, available: a.available },
      );
    }
    const lines = a.lines.map((l, i): OrderLine => {
      const p = products[a.origin[i]!]!;
      const total = lineTotalMinor(l.quantity, p.priceMinor);
      if (typeof total !== "number") throw invalid(total.message);
      return { ...l, name: p.name, priceMinor: p.priceMinor, totalMinor: total };
    });
    const subtotal = lines.reduce((s, l) => s + l.totalMinor, 0);
    const tax = taxMinor(subtotal, this.config.taxRateBps);
    if (!Number.isSafeInteger(subtotal + tax)) throw invalid("the order's total is too large");
    const now = this.config.now();
    return {
      id: `ord_${randomUUID()}`,
      userId: cart.userId,
      cartId: cart.id,
      status: "RESERVING",
      lines,
      currency: products[0]!.currency,
      subtotalMinor: subtotal,
      taxMinor: tax,
      totalMinor: subtotal + tax,
      holdId: 0,
      holdDurationMs: this.config.holdDurationMs,
      reservedTillMs: 0,
      paymentId: "",
      checkoutKey: key,
      payingPaymentId: "",
      failedPaymentCount: 0,
      createTimeMs: now,
      updateTimeMs: now,
    };
  }

  /** Reserves an order's lines (RESERVING -> PENDING_PAYMENT). A refusal
   * removes the order, frees the cart and, for a keyed checkout, is
   * remembered with the key; the refusal is thrown. */
  private async reserveOrder(o: Order): Promise<Order> {
    const lines: Line[] = o.lines.map((l) => ({
      productId: l.productId,
      warehouseId: l.warehouseId,
      quantity: l.quantity,
    }));
    const r = await this.engine.reserve({
      lines,
      requestId: `co:${o.id}`,
      holdDurationMs: o.holdDurationMs,
    });
    if (r.ok) {
      const next: Order = {
        ...o,
        status: "PENDING_PAYMENT",
        holdId: r.reservation.holdId,
        reservedTillMs: r.reservation.expireTimeMs,
        updateTimeMs: this.config.now(),
      };
      await this.records.write([{ kind: RecordKind.Order, key: o.id, value: next }]);
      this.deadlines.set(next.id, next.reservedTillMs);
      return next;
    }
    const error = engineError(r, lines);
    if (r.code === "OVERLOADED" || r.code === "UNAVAILABLE") {
      // Nothing was held (OVERLOADED) or start-up will try again (UNAVAILABLE).
      if (r.code === "OVERLOADED") await this.forget(o, null);
      throw error;
    }
    const line = o.lines[r.lineIndex ?? -1];
    if (line !== undefined) error.details.productId = line.productId;
    await this.forget(o, { code: error.code, message: error.message, details: error.details });
    throw error;
  }

  /** Removes an order that holds nothing and frees its cart. */
  private async forget(o: Order, refusal: CheckoutKey["refusal"] | null): Promise<void> {
    const writes: RecordWrite[] = [{ kind: RecordKind.Order, key: o.id, value: null }];
    const cart = this.records.get<CartRecord>(RecordKind.Cart, o.userId);
    if (cart?.pendingOrderId === o.id) {
      writes.push({ kind: RecordKind.Cart, key: o.userId, value: { ...cart, pendingOrderId: "" } });
    }
    if (o.checkoutKey !== "") {
      const key = `c:${o.userId}:${o.checkoutKey}`;
      const known = this.records.get<CheckoutKey>(RecordKind.Key, key);
      if (known !== undefined) {
        writes.push(
          refusal === null
            ? { kind: RecordKind.Key, key, value: null }
            : { kind: RecordKind.Key, key, value: { ...known, refusal } },
        );
      }
    }
    await this.records.write(writes);
  }

  // ---- payment, cancellation, expiry -------------------------------------------------

  async recordPayment(orderId: string, succeeded: boolean, paymentId: string): Promise<Order> {
    if (paymentId.length < 1 || paymentId.length > gatewayLimits.keyLengthMax) {
      throw invalid(`paymentId must be 1 to ${gatewayLimits.keyLengthMax} characters`, {
        field: "paymentId",
      });
    }
    return this.locks.run(`order:${orderId}`, async () => {
      const o = this.mustOrder(orderId);
      if (!succeeded) {
        if (o.status !== "PENDING_PAYMENT") return o;
        return this.save({ ...o, failedPaymentCount: o.failedPaymentCount + 1 });
      }
      if (o.status === "PAID") {
        if (o.paymentId === paymentId) return o;
        throw new ApiError("ORDER_ALREADY_PAID", `order ${orderId} was paid by ${o.paymentId}`, {
          orderId,
          paymentId: o.paymentId,
        });
      }
      const settled = o.status === "PENDING_PAYMENT" ? await this.pay(o, paymentId) : o;
      if (settled.status === "PAID") return settled;
      throw refusedPayment(settled);
    });
  }

  private async pay(o: Order, paymentId: string): Promise<Order> {
    if (this.config.now() >= o.reservedTillMs) {
      // Past the deadline the engine may be a tick from expiring the hold:
      // the deadline decides, never the tick.
      return this.follow(o, true);
    }
    const paying = await this.save({ ...o, payingPaymentId: paymentId });
    const r = await this.engine.fulfil({ holdId: o.holdId });
    if (r.ok || r.code === "HOLD_FULFILLED") return this.settle(paying, "PAID");
    if (r.code === "OVERLOADED" || r.code === "UNAVAILABLE") throw engineError(r);
    return this.follow(paying);
  }

  async cancel(orderId: string): Promise<Order> {
    return this.locks.run(`order:${orderId}`, async () => {
      const o = this.mustOrder(orderId);
      if (o.status === "PAID") {
        throw new ApiError("ORDER_ALREADY_PAID", `order ${orderId} is paid`, { orderId });
      }
      if (o.status !== "PENDING_PAYMENT") return o;
      const r = await this.engine.release({ holdId: o.holdId });
      if (r.ok) return this.settle(o, "CANCELLED");
      if (r.code === "OVERLOADED" || r.code === "UNAVAILABLE") throw engineError(r);
      return this.follow(o);
    });
  }

  order(orderId: string): Order | undefined {
    const o = this.records.get<Order>(RecordKind.Order, orderId);
    return o === undefined || o.status === "RESERVING" ? undefined : o;
  }

  /** At an order's deadline: it takes its hold's outcome. */
  private async expire(orderId: string): Promise<void> {
    if (this.closed) return;
    await this.locks.run(`order:${orderId}`, async () => {
      const o = this.records.get<Order>(RecordKind.Order, orderId);
      if (o?.status === "PENDING_PAYMENT") await this.follow(o);
    });
  }

  /**
   * Makes a pending order follow its hold: fulfilled -> PAID, ended
   * otherwise -> EXPIRED (CANCELLED when released before the deadline),
   * still open -> stays pending, looked at again shortly after its deadline.
   * `force`: past the deadline, an open hold is released now.
   */
  private async follow(o: Order, force = false): Promise<Order> {
    const h = await this.engine.hold(o.holdId);
    const now = this.config.now();
    if (h !== null && h.status === "OPEN") {
      if (force && !h.pinned) {
        const r = await this.engine.release({ holdId: o.holdId });
        if (r.ok) return this.settle(o, "EXPIRED");
        return this.follow(o);
      }
      this.deadlines.set(o.id, Math.max(o.reservedTillMs, now) + gatewayLimits.orderExpiryRetryMs);
      return o;
    }
    if (h !== null && h.status === "FULFILLED") return this.settle(o, "PAID");
    const released = h !== null && h.status === "RELEASED" && h.closeTimeMs < o.reservedTillMs;
    return this.settle(o, released ? "CANCELLED" : "EXPIRED");
  }

  /** Records an order's end and frees (PAID: empties) its cart. */
  private async settle(o: Order, status: "PAID" | "EXPIRED" | "CANCELLED"): Promise<Order> {
    const next: Order = {
      ...o,
      status,
      paymentId: status === "PAID" ? o.payingPaymentId || o.paymentId : o.paymentId,
      updateTimeMs: this.config.now(),
    };
    const writes: RecordWrite[] = [{ kind: RecordKind.Order, key: o.id, value: next }];
    const cart = this.records.get<CartRecord>(RecordKind.Cart, o.userId);
    if (cart?.pendingOrderId === o.id) {
      const items = status === "PAID" ? [] : cart.items;
      writes.push({
        kind: RecordKind.Cart,
        key: o.userId,
        value: { ...cart, items, pendingOrderId: "", updateTimeMs: next.updateTimeMs },
      });
    }
    await this.records.write(writes);
    this.deadlines.delete(o.id);
    return next;
  }

  private async save(o: Order): Promise<Order> {
    const next = { ...o, updateTimeMs: this.config.now() };
    await this.records.write([{ kind: RecordKind.Order, key: o.id, value: next }]);
    return next;
  }

  private mustOrder(orderId: string): Order {
    const o = this.order(orderId);
    if (o === undefined) throw notFound("order", orderId);
    return o;
  }

  private cartRecord(userId: string): CartRecord {
    return (
      this.records.get<CartRecord>(RecordKind.Cart, userId) ?? {
        id: cartIdOf(userId),
        userId,
        items: [],
        pendingOrderId: "",
        updateTimeMs: 0,
      }
    );
  }

  private pendingOrder(cart: CartRecord): Order | undefined {
    if (cart.pendingOrderId === "") return undefined;
    const o = this.records.get<Order>(RecordKind.Order, cart.pendingOrderId);
    return o?.status === "PENDING_PAYMENT" ? o : undefined;
  }

  private view(cart: CartRecord): CartView {
    const items: CartItemView[] = [];
    let currency = "";
    for (const i of cart.items) {
      const p = this.catalog.product(i.productId);
      if (p === undefined) continue;
      currency = p.currency;
      const total = lineTotalMinor(i.quantity, p.priceMinor);
      items.push({
        productId: p.id,
        name: p.name,
        quantity: i.quantity,
        priceMinor: p.priceMinor,
        totalMinor: typeof total === "number" ? total : Number.NaN,
      });
    }
    const subtotal = items.reduce((s, i) => s + i.totalMinor, 0);
    const tax = taxMinor(subtotal, this.config.taxRateBps);
    return {
      id: cart.id,
      userId: cart.userId,
      items,
      currency,
      subtotalMinor: subtotal,
      taxMinor: tax,
      totalMinor: subtotal + tax,
      pendingOrderId: this.pendingOrder(cart)?.id ?? "",
    };
  }
}

/** A customer has one cart; its id is derived from the customer's id so that
 * it exists (empty) before anything is written. */
export function cartIdOf(userId: string): string {
  return `cart_${createHash("sha256").update(userId).digest("base64url").slice(0, 22)}`;
}

function refusedPayment(o: Order): ApiError {
  if (o.status === "CANCELLED") {
    return new ApiError("ORDER_CANCELLED", `order ${o.id} was cancelled`, { orderId: o.id });
  }
  return new ApiError(
    "ORDER_EXPIRED",
    `order ${o.id} expired at ${new Date(o.reservedTillMs).toISOString()}: its stock was released, the payment is refused`,
    { orderId: o.id, reservedTill: new Date(o.reservedTillMs).toISOString() },
  );
}
