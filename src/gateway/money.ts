import assert from "node:assert/strict";

// Money is never a float inside: an integer count of minor units (paise,
// cents, fils) and an ISO 4217 code. Floats exist only at the JSON edge: a
// client's number is turned into minor units exactly, from its decimal
// digits, and minor units go back out as a number whose shortest decimal
// form is the exact amount.

/** A unit price in minor units: 10^13, i.e. 10^11 major units of a
 * 2-decimal currency (100 billion rupees or dollars), far above any real
 * price. A price alone then stays below 2^53 (9.007 x 10^15) with room for
 * about 900 units at the top price; a line total (quantity x price, quantity
 * up to 10^9) can pass 2^53, so `lineTotalMinor` checks the product again
 * rather than trusting this bound. */
export const priceMinorUnitsMax = 10_000_000_000_000;

/** A tax rate in basis points: 100%. */
export const taxRateBasisPointsMax = 10_000;

/** Decimals a tax rate may have: one basis point is 0.01%. */
const taxRateDecimalsMax = 2;

/** An expected refusal: the caller turns it into INVALID_ARGUMENT. */
export interface MoneyError {
  ok: false;
  code: "INVALID_ARGUMENT";
  message: string;
}

function moneyError(message: string): MoneyError {
  return { ok: false, code: "INVALID_ARGUMENT", message };
}

const currencyCode = /^[A-Z]{3}$/;
let supportedCurrencies: ReadonlySet<string> | undefined;
// One entry per supported currency at most (about 300): bounded.
const digitsByCurrency = new Map<string, number>();

/** Fraction digits of an ISO 4217 currency (INR 2, JPY 0, KWD 3), or null
 * for a code this runtime's ICU does not know. */
export function currencyDigits(code: string): number | null {
  const cached = digitsByCurrency.get(code);
  if (cached !== undefined) return cached;
  if (!currencyCode.test(code)) return null;
  supportedCurrencies ??= new Set(Intl.supportedValuesOf("currency"));
  if (!supportedCurrencies.has(code)) return null;
  const digits = new Intl.NumberFormat("en", {
    style: "currency",
    currency: code,
  }).resolvedOptions().maximumFractionDigits;
  assert(digits !== undefined && Number.isInteger(digits), `money: no fraction digits for ${code}`);
  digitsByCurrency.set(code, digits);
  return digits;
}

function digitsOf(currency: string): number {
  const digits = currencyDigits(currency);
  assert(digits !== null, `money: ${currency} is not a known currency`);
  return digits;
}

// String(n) of a finite positive number: "119000.5", "0.1", "1e-7",
// "1.5e+21". Its digits are the shortest decimal that reads back as n, which
// is the decimal the client wrote whenever that decimal fits in a double.
const numberText = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/;

/** A positive amount the client sent in major units (a JSON number) as
 * integer minor units of `currency`, decided from its decimal digits: 0.29
 * INR is 29 paise, never 28.999999999999996. */
export function toMinorUnits(major: unknown, currency: string): number | MoneyError {
  const digits = currencyDigits(currency);
  if (digits === null) return moneyError(`currency ${currency} is not an ISO 4217 code`);
  if (typeof major !== "number") return moneyError("price must be a number");
  if (!Number.isFinite(major)) return moneyError("price must be a finite number");
  if (major <= 0) return moneyError("price must be greater than 0");
  const match = numberText.exec(String(major));
  assert(match !== null, `money: unexpected number form ${String(major)}`);
  const fraction = match[2] ?? "";
  // The value is mantissa x 10^-scale, with mantissa an integer.
  const mantissa = (match[1]! + fraction).replace(/0+$/, "");
  const trailingZeroCount = match[1]!.length + fraction.length - mantissa.length;
  const scale = fraction.length - Number(match[3] ?? "0") - trailingZeroCount;
  if (scale > digits) {
    return moneyError(
      digits === 0
        ? `price must be a whole number for ${currency}`
        : `price must have at most ${digits} decimals for ${currency}`,
    );
  }
  const minor = BigInt(mantissa) * 10n ** BigInt(digits - scale);
  if (minor > BigInt(priceMinorUnitsMax)) {
    return moneyError(
      `price must be at most ${toMajorUnits(priceMinorUnitsMax, currency)} ${currency}`,
    );
  }
  return Number(minor);
}

/** Minor units as a JSON number in major units: 11900050 INR is 119000.5. */
export function toMajorUnits(minor: number, currency: string): number {
  assert(Number.isSafeInteger(minor), `money: ${minor} minor units is not a safe integer`);
  const digits = digitsOf(currency);
  const text = Math.abs(minor)
    .toString()
    .padStart(digits + 1, "0");
  const whole = text.slice(0, text.length - digits);
  const fraction = text.slice(text.length - digits);
  // Number() of the exact decimal text is the double nearest the amount,
  // the one whose shortest form (what JSON.stringify writes) is that text.
  const major = Number(digits === 0 ? whole : `${whole}.${fraction}`);
  return minor < 0 ? -major : major;
}

/** quantity x unit price, or an error when the product is not an exact
 * integer in a double (above 2^53 - 1). */
export function lineTotalMinor(quantity: number, unitMinor: number): number | MoneyError {
  assert(Number.isSafeInteger(quantity) && quantity >= 0, `money: bad quantity ${quantity}`);
  assert(Number.isSafeInteger(unitMinor) && unitMinor >= 0, `money: bad unit price ${unitMinor}`);
  // Exact: when the true product is at most 2^53 the double product is it;
  // when it is above, the double product rounds to 2^53 or more, never below.
  const total = quantity * unitMinor;
  if (!Number.isSafeInteger(total)) {
    return moneyError(
      `line total (${quantity} x ${unitMinor} minor units) exceeds ${Number.MAX_SAFE_INTEGER} minor units`,
    );
  }
  return total;
}

/** Tax on a subtotal at `rateBasisPoints` (1800 = 18%), rounded half up to
 * the minor unit, exactly (BigInt: subtotal x rate can pass 2^53). */
export function taxMinor(subtotalMinor: number, rateBasisPoints: number): number {
  assert(
    Number.isSafeInteger(subtotalMinor) && subtotalMinor >= 0,
    `money: bad subtotal ${subtotalMinor}`,
  );
  assert(
    Number.isInteger(rateBasisPoints) &&
      rateBasisPoints >= 0 &&
      rateBasisPoints <= taxRateBasisPointsMax,
    `money: bad tax rate ${rateBasisPoints} basis points`,
  );
  const basisPointsPerUnit = BigInt(taxRateBasisPointsMax);
  const scaled = BigInt(subtotalMinor) * BigInt(rateBasisPoints);
  // The tax is at most the subtotal, so it is a safe integer too.
  return Number((scaled + basisPointsPerUnit / 2n) / basisPointsPerUnit);
}

const taxRateText = /^(\d{1,3})(?:\.(\d{1,2}))?%?$/;

/** A tax rate flag ("18", "18%", "7.25%", "0") in basis points, or null for
 * anything else: negative, above 100%, more than 2 decimals, not a number. */
export function parseTaxRate(text: string): number | null {
  const match = taxRateText.exec(text.trim());
  if (match === null) return null;
  const fraction = (match[2] ?? "").padEnd(taxRateDecimalsMax, "0");
  const basisPoints = Number(match[1]) * 100 + Number(fraction);
  return basisPoints <= taxRateBasisPointsMax ? basisPoints : null;
}
