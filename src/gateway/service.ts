import { type AdjustmentReason, limits } from "../engine/index.ts";
import type { Place } from "./allocate.ts";
import { type Auth, authorize, type Principal, Role, type Verified } from "./auth.ts";
import type { Catalog, NewProduct, NewWarehouse, Page, Product, Warehouse } from "./catalog.ts";
import { ApiError, invalid, notFound } from "./errors.ts";
import { gatewayLimits } from "./limits.ts";
import type { CartView, Order, Orders } from "./orders.ts";
import type { Level, ReservationOut, ReserveInput, Stock } from "./stock.ts";

// The one service layer behind both transports: who may call what, and the
// operations themselves. Transports turn their requests into these calls
// and ApiErrors into their statuses; nothing here knows HTTP or gRPC.

export const Operation = {
  CreateWarehouse: "CreateWarehouse",
  GetWarehouse: "GetWarehouse",
  ListWarehouses: "ListWarehouses",
  CreateProduct: "CreateProduct",
  GetProduct: "GetProduct",
  SearchProducts: "SearchProducts",
  ReceiveStock: "ReceiveStock",
  AdjustStock: "AdjustStock",
  GetInventory: "GetInventory",
  Reserve: "Reserve",
  ReserveBatch: "ReserveBatch",
  ReleaseReservation: "ReleaseReservation",
  FulfilReservation: "FulfilReservation",
  GetReservation: "GetReservation",
  SetCartItem: "SetCartItem",
  GetCart: "GetCart",
  Checkout: "Checkout",
  RecordPayment: "RecordPayment",
  GetOrder: "GetOrder",
  CancelOrder: "CancelOrder",
} as const;
export type Operation = (typeof Operation)[keyof typeof Operation];

const anyone = [Role.Admin, Role.Service, Role.Customer] as const;
const admin = [Role.Admin] as const;
const services = [Role.Service, Role.Admin] as const;
const customer = [Role.Customer] as const;

/** Who may call each operation. Customers see only their own carts and
 * orders (checked in the operation). */
export const allowedRoles: Record<Operation, readonly Role[]> = {
  CreateWarehouse: admin,
  GetWarehouse: anyone,
  ListWarehouses: anyone,
  CreateProduct: admin,
  GetProduct: anyone,
  SearchProducts: anyone,
  ReceiveStock: admin,
  AdjustStock: admin,
  GetInventory: anyone,
  Reserve: services,
  ReserveBatch: services,
  ReleaseReservation: services,
  FulfilReservation: services,
  GetReservation: services,
  SetCartItem: customer,
  GetCart: customer,
  Checkout: customer,
  RecordPayment: [Role.Service],
  GetOrder: anyone,
  CancelOrder: anyone,
};

/** Operations that change state: a cluster follower refuses them. */
const writes: ReadonlySet<Operation> = new Set<Operation>([
  "CreateWarehouse",
  "CreateProduct",
  "ReceiveStock",
  "AdjustStock",
  "Reserve",
  "ReserveBatch",
  "ReleaseReservation",
  "FulfilReservation",
  "SetCartItem",
  "Checkout",
  "RecordPayment",
  "CancelOrder",
]);

export class Service {
  /** On a cluster follower: why writes are refused (naming the leader). */
  readOnly: (() => string) | null = null;

  constructor(
    readonly auth: Auth,
    readonly catalog: Catalog,
    readonly stock: Stock,
    readonly orders: Orders,
    private readonly now: () => number,
  ) {}

  /** The caller, from the transport's authorization header, allowed to
   * call the operation; throws UNAUTHENTICATED or PERMISSION_DENIED. */
  async caller(header: string | undefined, op: Operation): Promise<Principal> {
    return this.allowed(await this.auth.verify(header), op);
  }

  /** `caller` without a promise for a token verified before; undefined
   * when the token must go through `caller`. */
  knownCaller(header: string | undefined, op: Operation): Principal | undefined {
    const v = this.auth.verifyKnown(header);
    return v === undefined ? undefined : this.allowed(v, op);
  }

  private allowed(v: Verified, op: Operation): Principal {
    if (!v.ok) throw new ApiError("UNAUTHENTICATED", v.message);
    const denied = authorize(v.principal, allowedRoles[op], op);
    if (denied !== null) throw new ApiError("PERMISSION_DENIED", denied.message);
    if (this.readOnly !== null && writes.has(op))
      throw new ApiError("UNAVAILABLE", this.readOnly());
    return v.principal;
  }

  // ---- catalog ---------------------------------------------------------------

  createWarehouse(input: NewWarehouse): Promise<Warehouse> {
    return this.catalog.createWarehouse(input, this.now());
  }

  getWarehouse(id: string): Warehouse {
    return this.catalog.mustWarehouse(id);
  }

  listWarehouses(cursor: string | undefined, pageSize: number | undefined): Page<Warehouse> {
    return this.catalog.listWarehouses(cursor, pageSizeOf(pageSize));
  }

  createProduct(input: NewProduct): Promise<Product> {
    return this.catalog.createProduct(input, this.now());
  }

  getProduct(id: string): Product {
    return this.catalog.mustProduct(id);
  }

  searchProducts(
    keyword: string,
    cursor: string | undefined,
    pageSize: number | undefined,
  ): Page<Product> {
    return this.catalog.searchProducts(keyword, cursor, pageSizeOf(pageSize));
  }

  // ---- stock -------------------------------------------------------------------

  receiveStock(productId: string, warehouseId: string, quantity: number): Promise<Level> {
    return this.stock.receive(productId, warehouseId, quantity);
  }

  adjustStock(
    productId: string,
    warehouseId: string,
    delta: number,
    reason: AdjustmentReason,
  ): Promise<Level> {
    return this.stock.adjust(productId, warehouseId, delta, reason);
  }

  inventory(productId: string): Promise<Level[]> {
    return this.stock.levels(productId);
  }

  reserve(input: ReserveInput): Promise<ReservationOut> {
    return this.stock.reserve(input, this.now());
  }

  /** Independent reservations, each all-or-nothing, answered in order. */
  async reserveBatch(inputs: ReserveInput[]): Promise<(ReservationOut | ApiError)[]> {
    if (inputs.length < 1 || inputs.length > gatewayLimits.batchCountMax) {
      throw invalid(`a batch holds 1 to ${gatewayLimits.batchCountMax} reservations`, {
        field: "requests",
      });
    }
    return this.stock.reserveMany(inputs, this.now());
  }

  release(id: string): Promise<ReservationOut> {
    return this.stock.release(holdIdOf(id));
  }

  fulfil(id: string, quantities: number[] | undefined): Promise<ReservationOut> {
    return this.stock.fulfil(holdIdOf(id), quantities);
  }

  reservation(id: string): Promise<ReservationOut> {
    return this.stock.get(holdIdOf(id));
  }

  // ---- carts and orders ---------------------------------------------------------

  setCartItem(p: Principal, productId: string, quantity: number): Promise<CartView> {
    return this.orders.setCartItem(p.sub, productId, quantity);
  }

  cart(p: Principal): CartView {
    return this.orders.cart(p.sub);
  }

  checkout(
    p: Principal,
    cartId: string,
    key: string,
    shipTo: Place | undefined,
  ): Promise<{ order: Order; created: boolean }> {
    if (cartId === "") throw invalid("cartId is required", { field: "cartId" });
    return this.orders.checkout(p.sub, cartId, key, shipTo);
  }

  recordPayment(orderId: string, succeeded: boolean, paymentId: string): Promise<Order> {
    return this.orders.recordPayment(required("orderId", orderId), succeeded, paymentId);
  }

  order(p: Principal, orderId: string): Order {
    const o = this.orders.order(required("id", orderId));
    // Another customer's order is not found, so its existence does not leak.
    if (o === undefined || (p.role === Role.Customer && o.userId !== p.sub)) {
      throw notFound("order", orderId);
    }
    return o;
  }

  cancel(p: Principal, orderId: string): Promise<Order> {
    this.order(p, orderId);
    return this.orders.cancel(orderId);
  }
}

function pageSizeOf(pageSize: number | undefined): number {
  if (pageSize === undefined || pageSize === 0) return gatewayLimits.pageSizeDefault;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > gatewayLimits.pageSizeMax) {
    throw invalid(`pageSize must be 1 to ${gatewayLimits.pageSizeMax}`, { field: "pageSize" });
  }
  return pageSize;
}

/** Hold ids are positive integers below 2^53, sent as decimal strings. A
 * well-formed id the engine never gave (every hold id is at least 1024:
 * `seq * 1024 + partition`) is not found, like any other unknown id. */
export function holdIdOf(id: string): number {
  const n = /^[1-9][0-9]{0,15}$/.test(id) ? Number(id) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw invalid(`reservation id must be a positive whole number, not '${id.slice(0, 40)}'`, {
      field: "id",
    });
  }
  if (n < limits.partitionCountMax) {
    throw new ApiError("HOLD_NOT_FOUND", `reservation ${n} not found`, { id });
  }
  return n;
}

/** An id a request must carry (proto3 sends a missing one as ""). */
function required(field: string, id: string): string {
  if (id === "") throw invalid(`${field} is required`, { field });
  return id;
}
