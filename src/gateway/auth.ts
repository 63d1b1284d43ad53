import { randomBytes, webcrypto } from "node:crypto";
import { link, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { decodeProtectedHeader, errors, type JWTPayload, jwtVerify, SignJWT } from "jose";
import { gatewayLimits } from "./limits.ts";

// Who is calling: HS256 JWTs signed with one secret per deployment. The
// gateway verifies a token on every request, so a verified token is
// remembered (bounded) and later requests only check its expiry.

export const Role = { Admin: "admin", Service: "service", Customer: "customer" } as const;
export type Role = (typeof Role)[keyof typeof Role];

const roles: readonly string[] = Object.values(Role);

export interface Principal {
  sub: string;
  role: Role;
}

/** Tagged failure, not thrown: an expected outcome. */
export interface AuthFailure {
  ok: false;
  code: "UNAUTHENTICATED";
  message: string;
}

export interface PermissionFailure {
  ok: false;
  code: "PERMISSION_DENIED";
  message: string;
}

export type Verified = { ok: true; principal: Principal } | AuthFailure;

/** The signing secret cannot be used (too short): a configuration error. */
export class AuthConfigError extends Error {
  override name = "AuthConfigError";
}

export const authLimits = {
  /** A token's lifetime when none is asked for. */
  tokenTtlMsDefault: 3_600_000,
  /** JWT times are whole seconds: a shorter lifetime could end before it starts. */
  tokenTtlMsMin: 1000,
  /** A year: long enough for a service's token, short enough that a leaked
   * one stops working without rotating the secret. */
  tokenTtlMsMax: 365 * 86_400_000,
  /** Characters in a subject: ids of customers and services are shorter. */
  subjectLengthMax: 128,
  /** Characters in a token: ours are about 200; a longer one is refused
   * before any base64 or JSON work. */
  tokenLengthMax: 4096,
  /** Bytes of secret: an HS256 key at least as long as its hash (RFC 7518 §3.2). */
  secretBytesMin: 32,
} as const;

const issuer = "stockd";
/** The generated secret, in the data directory. */
export const secretFileName = "jwt.secret";
const secretEnvName = "STOCKD_JWT_SECRET";
/** Random bytes in a generated secret, stored as hex. */
const secretBytesGenerated = 32;
/**
 * Zero: the clock that signs is the clock that verifies (stockd, or
 * `stockd token` next to it), and tokens carry no `nbf`, so skew could only
 * shift the moment a token expires. Zero also keeps the cached check below
 * exactly jose's: expired once `now >= exp`.
 */
const clockToleranceS = 0;
/** Three base64url parts. An empty signature is let through to jose, so
 * that an `alg: none` token is refused for its algorithm, by name. */
const compactJwt = /^[\w-]+\.[\w-]+\.[\w-]*$/;

interface Remembered {
  verified: { ok: true; principal: Principal };
  expMs: number;
}

export class Auth {
  /** Verified tokens by their text, oldest first (a Map keeps insertion
   * order): when full, the oldest is dropped. Bounded by
   * gatewayLimits.tokenCacheCountMax. */
  private readonly remembered = new Map<string, Remembered>();

  private constructor(
    private readonly key: webcrypto.CryptoKey,
    private readonly now: () => number,
  ) {}

  /**
   * The secret is `options.secret` when given (tests), else
   * STOCKD_JWT_SECRET (empty counts as unset), else `<dataDir>/jwt.secret`,
   * generated on first use. A secret shorter than 32 bytes throws
   * AuthConfigError. The file's text is the secret, so
   * `STOCKD_JWT_SECRET=$(cat DIR/jwt.secret)` signs the same tokens.
   */
  static async open(
    dataDir: string,
    options: {
      secret?: string;
      env?: Record<string, string | undefined>;
      now?: () => number;
    } = {},
  ): Promise<Auth> {
    const env = options.env ?? process.env;
    const fromEnv = env[secretEnvName];
    const secret =
      options.secret !== undefined
        ? checkedSecret(options.secret, "the secret given")
        : fromEnv !== undefined && fromEnv !== ""
          ? checkedSecret(fromEnv, secretEnvName)
          : await fileSecret(dataDir);
    const key = await webcrypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    return new Auth(key, options.now ?? Date.now);
  }

  /** An HS256 token for the principal, good for ttlMs (1s to a year). A
   * bad principal or ttl is a bug in the caller: the promise rejects. */
  async sign(p: Principal, ttlMs: number = authLimits.tokenTtlMsDefault): Promise<string> {
    const problem = principalProblem(p.sub, p.role);
    if (problem !== null) throw new TypeError(`cannot sign: principal ${problem}`);
    if (
      !Number.isSafeInteger(ttlMs) ||
      ttlMs < authLimits.tokenTtlMsMin ||
      ttlMs > authLimits.tokenTtlMsMax
    ) {
      throw new RangeError(`token ttl must be 1s to a year in whole ms, not ${ttlMs}`);
    }
    const nowMs = this.now();
    return new SignJWT({ role: p.role })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(p.sub)
      .setIssuer(issuer)
      .setIssuedAt(Math.floor(nowMs / 1000))
      .setExpirationTime(Math.floor((nowMs + ttlMs) / 1000))
      .sign(this.key);
  }

  /** The caller named by an `Authorization` header value (`Bearer <jwt>`,
   * the scheme in any case), or why not. */
  /** The answer for a token verified before (and not yet expired), without
   * a promise: the hot path of every request. undefined: call verify. */
  verifyKnown(header: string | undefined): Verified | undefined {
    if (header === undefined) return undefined;
    const token = bearerToken(header);
    if (typeof token !== "string") return undefined;
    const seen = this.remembered.get(token);
    return seen !== undefined && this.now() < seen.expMs ? seen.verified : undefined;
  }

  async verify(header: string | undefined): Promise<Verified> {
    const token = bearerToken(header);
    if (typeof token !== "string") return token;
    const nowMs = this.now();
    const seen = this.remembered.get(token);
    if (seen !== undefined) {
      if (nowMs < seen.expMs) return seen.verified;
      this.remembered.delete(token);
      return unauthenticated(expiredMessage(seen.expMs));
    }
    if (token.length > authLimits.tokenLengthMax) {
      return unauthenticated(
        `malformed token: ${token.length} characters, at most ${authLimits.tokenLengthMax}`,
      );
    }
    if (!compactJwt.test(token)) {
      return unauthenticated("malformed token: a JWT is three base64url parts joined by dots");
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: ["HS256"],
        issuer,
        requiredClaims: ["exp"],
        clockTolerance: clockToleranceS,
        currentDate: new Date(nowMs),
      }));
    } catch (err) {
      return unauthenticated(rejection(token, err));
    }
    const { sub, role, exp } = payload;
    const problem = principalProblem(sub, role);
    if (problem !== null) return unauthenticated(`token ${problem}`);
    const verified = Object.freeze({
      ok: true as const,
      principal: Object.freeze({ sub: sub as string, role: role as Role }),
    });
    // jose has checked that exp is a number, and expires a token once
    // floor(now / 1000) >= exp: that is now >= ceil(exp) * 1000.
    this.remember(token, { verified, expMs: Math.ceil(exp as number) * 1000 });
    return verified;
  }

  private remember(token: string, entry: Remembered): void {
    if (this.remembered.size >= gatewayLimits.tokenCacheCountMax) {
      const oldest = this.remembered.keys().next();
      if (!oldest.done) this.remembered.delete(oldest.value);
    }
    this.remembered.set(token, entry);
  }
}

/** Null when the principal may call the operation, else why not. */
export function authorize(
  principal: Principal,
  allowed: readonly Role[],
  operation: string,
): null | PermissionFailure {
  if (allowed.includes(principal.role)) return null;
  return {
    ok: false,
    code: "PERMISSION_DENIED",
    message: `role ${principal.role} may not call ${operation}`,
  };
}

function unauthenticated(message: string): AuthFailure {
  return { ok: false, code: "UNAUTHENTICATED", message };
}

function bearerToken(header: string | undefined): string | AuthFailure {
  if (header === undefined || header.trim() === "") {
    return unauthenticated("missing authorization header: send 'Authorization: Bearer <token>'");
  }
  const space = header.indexOf(" ");
  if (space < 0 || header.slice(0, space).toLowerCase() !== "bearer") {
    return unauthenticated("authorization header is not a bearer token: send 'Bearer <token>'");
  }
  const token = header.slice(space + 1).trim();
  if (token === "") return unauthenticated("authorization header has no token after 'Bearer'");
  return token;
}

/** Why a claim set does not name a caller, or null when it does. */
function principalProblem(sub: unknown, role: unknown): string | null {
  if (sub === undefined) return "has no subject (sub)";
  if (typeof sub !== "string" || sub.length === 0 || sub.length > authLimits.subjectLengthMax) {
    return `subject (sub) must be a string of 1 to ${authLimits.subjectLengthMax} characters`;
  }
  if (role === undefined) return "has no role";
  if (typeof role !== "string" || !roles.includes(role)) {
    return `role ${shown(role)} is not one of ${roles.join(", ")}`;
  }
  return null;
}

/** What jose refused, in the caller's terms. Anything that is not a JOSE
 * error is a bug or a fault, not a bad token: it is thrown on. */
function rejection(token: string, err: unknown): string {
  if (err instanceof errors.JWTExpired) {
    const exp = err.payload.exp;
    return typeof exp === "number" ? expiredMessage(Math.ceil(exp) * 1000) : "token expired";
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return "token signature does not verify: forged, tampered with, or signed with another secret";
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return `token algorithm ${shown(algorithmOf(token))} is not accepted: only HS256`;
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "iss") {
      return err.reason === "missing"
        ? `token has no issuer (iss): stockd's tokens are issued by "${issuer}"`
        : `token issuer ${shown(err.payload.iss)} is not "${issuer}"`;
    }
    if (err.claim === "exp" && err.reason === "missing") return "token has no expiry (exp)";
    return `token claim ${err.claim} is invalid: ${err.message}`;
  }
  if (err instanceof errors.JOSEError) return `malformed token: ${err.message}`;
  throw err;
}

function expiredMessage(expMs: number): string {
  return `token expired at ${new Date(expMs).toISOString()}`;
}

function algorithmOf(token: string): unknown {
  try {
    return decodeProtectedHeader(token).alg;
  } catch {
    return undefined;
  }
}

/** A value from a token, quoted for a message when short; the token comes
 * from the caller, so nothing long is echoed back. */
function shown(value: unknown): string {
  if (value === undefined) return "(none)";
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= 40 ? text : "(too long to show)";
}

function checkedSecret(secret: string, what: string): string {
  const bytes = Buffer.byteLength(secret, "utf8");
  if (bytes < authLimits.secretBytesMin) {
    throw new AuthConfigError(
      `${what} is ${bytes} bytes; a JWT secret must be at least ${authLimits.secretBytesMin} bytes`,
    );
  }
  return secret;
}

/** The secret in `<dataDir>/jwt.secret`, generated when missing. */
async function fileSecret(dataDir: string): Promise<string> {
  const path = join(dataDir, secretFileName);
  const existing = await readSecretFile(path);
  if (existing !== null) return existing;
  await mkdir(dataDir, { recursive: true });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const file = await open(temp, "wx", 0o600);
  try {
    await file.writeFile(randomBytes(secretBytesGenerated).toString("hex"));
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await publish(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
  const dir = await open(dataDir, "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  // Read back: when two processes generate at once, both use the winner's.
  const published = await readSecretFile(path);
  if (published === null) throw new Error(`${path} vanished right after it was written`);
  return published;
}

/**
 * Puts the complete temp file in place atomically. A hard link, unlike a
 * rename, never replaces a secret that another process published first (and
 * may have signed with). Filesystems without hard links get the rename.
 */
async function publish(temp: string, path: string): Promise<void> {
  try {
    await link(temp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") {
      throw err;
    }
    await rename(temp, path);
  }
}

async function readSecretFile(path: string): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  // An editor may have added a newline; `$(cat ...)` drops it too.
  return checkedSecret(text.trim(), path);
}
