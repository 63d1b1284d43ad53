// The gateway's bounds, each with the reason for its number (the engine's
// are in src/engine/limits.ts).

export const gatewayLimits = {
  /** Bytes in one HTTP body: a reservation of 100 lines with long ids is
   * about 30 KB; a batch is gRPC only. */
  bodyBytesMax: 64 * 1024,
  /** Bytes in one gRPC message: a ReserveBatch of 10,000 small requests is
   * about 1 MB. */
  grpcMessageBytesMax: 4 * 1024 * 1024,
  /** Reservations in one ReserveBatch: large enough to amortise a call, small
   * enough that one call cannot fill a worker's queue on its own. */
  batchCountMax: 10_000,
  /** Characters in a warehouse or product name. */
  nameLengthMax: 200,
  addressLengthMax: 1000,
  descriptionLengthMax: 5000,
  categoryLengthMax: 100,
  /** Characters in a search keyword. */
  keywordLengthMax: 200,
  /** Characters in an Idempotency-Key or payment id. */
  keyLengthMax: 128,
  /** Page size bounds for lists and search. */
  pageSizeDefault: 20,
  pageSizeMax: 100,
  /** Warehouses: every line without a warehouse reads the product's stock in
   * each of them, so this bounds the allocator's work per line. */
  warehouseCountMax: 10_000,
  /** Products in the catalog, all of which sit in memory with their index
   * entries (about 1 KB each). */
  productCountMax: 1_000_000,
  /** A unit price in minor units: 10^13 (10^11 major units of a 2-decimal
   * currency). With a line's quantity at most 10^9 a line total can pass
   * 2^53, so line totals are checked again where they are computed. */
  priceMinorMax: 10_000_000_000_000,
  /** Lines in a cart: a checkout reserves them in one reservation, which
   * the engine bounds at 100 lines (a line may split over warehouses, so
   * fewer products than that). */
  cartLineCountMax: 50,
  /** Tokens whose verification is remembered (an HMAC check and a JSON parse
   * saved per request); services reuse one token for many calls. */
  tokenCacheCountMax: 10_000,
  /** Attempts to allocate and reserve a line without a warehouse when
   * another reservation took the stock between reading and reserving. */
  allocateAttemptMax: 3,
  /** Default tax rate in basis points (18%). */
  taxRateBpsDefault: 1800,
  /** How often pending orders past their deadline are looked at again when
   * their holds have not ended yet (the engine's wheel runs a tick behind). */
  orderExpiryRetryMs: 50,
} as const;
